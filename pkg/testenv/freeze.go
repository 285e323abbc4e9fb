package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Freeze stops the process pid with SIGSTOP, as a stalled disk or a paused VM would, and returns once
// every thread of it has stopped: kill(2) only queues the signal, and a thread already serving a
// request could still answer it. The returned resume sends SIGCONT (once; later calls do nothing) and
// also runs when the test ends.
func Freeze(t testing.TB, pid int) (resume func()) {
	t.Helper()
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		t.Fatalf("freeze %d: %v", pid, err)
	}
	done := false
	resume = func() {
		if !done {
			done = true
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	t.Cleanup(resume)
	deadline := time.Now().Add(5 * time.Second)
	for {
		running, err := runningThreads(pid)
		if err == nil && running == 0 {
			return resume
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d not stopped 5 s after SIGSTOP (%d threads running, %v)", pid, running, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// runningThreads counts the threads of pid whose state (the third field of /proc/…/stat) is not
// stopped (T) or traced (t).
func runningThreads(pid int) (int, error) {
	stats, err := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/stat", pid))
	if err != nil || len(stats) == 0 {
		return 0, fmt.Errorf("no threads of %d: %v", pid, err)
	}
	running := 0
	for _, p := range stats {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // the thread ended
		}
		// The command name sits in parentheses and may contain spaces: the state follows the last ")".
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || i+2 >= len(s) {
			return 0, fmt.Errorf("%s: unreadable: %q", p, s)
		}
		if state := s[i+2]; state != 'T' && state != 't' {
			running++
		}
	}
	return running, nil
}
