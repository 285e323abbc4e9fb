package service

import (
	"bytes"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe to read while the log buffer's timer writes to it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

func TestLogBufferFlushesAfterDelay(t *testing.T) {
	var out syncBuffer
	b := newLogBuffer(&out, 1<<10, 20*time.Millisecond)
	b.Write([]byte("one\n"))
	b.Write([]byte("two\n"))
	if got := out.String(); got != "" {
		t.Fatalf("written before the delay: %q", got)
	}
	deadline := time.Now().Add(5 * time.Second)
	for out.String() != "one\ntwo\n" {
		if time.Now().After(deadline) {
			t.Fatalf("not flushed after the delay: %q", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The timer is armed again by the next line, not left running.
	b.Write([]byte("three\n"))
	for out.String() != "one\ntwo\nthree\n" {
		if time.Now().After(deadline) {
			t.Fatalf("the second line was not flushed: %q", out.String())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestLogBufferFlushesWhenFullAndOnStop(t *testing.T) {
	var out syncBuffer
	b := newLogBuffer(&out, 10, time.Hour)
	b.Write([]byte("123456\n"))
	b.Write([]byte("abcdef\n")) // would not fit: the first line goes out
	if got := out.String(); got != "123456\n" {
		t.Fatalf("after overflowing: %q", got)
	}
	long := strings.Repeat("x", 20) + "\n"
	b.Write([]byte(long)) // larger than the buffer: written through, after what waited
	if got := out.String(); got != "123456\nabcdef\n"+long {
		t.Fatalf("a line larger than the buffer: %q", got)
	}
	b.Write([]byte("last\n"))
	b.stop()
	if got := out.String(); !strings.HasSuffix(got, "last\n") {
		t.Fatalf("stop did not flush: %q", got)
	}
	b.Write([]byte("after\n"))
	if got := out.String(); !strings.HasSuffix(got, "after\n") {
		t.Fatalf("a line after stop was not written through: %q", got)
	}
}
