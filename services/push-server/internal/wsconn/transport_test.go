package wsconn

import (
	"context"
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/wsframe"
)

func TestAppendEventSplitsLines(t *testing.T) {
	for payload, want := range map[string]string{
		`{"a":1}`:       "data: {\"a\":1}\n\n",
		"{\n\"a\":1\n}": "data: {\ndata: \"a\":1\ndata: }\n\n",
		"x\r\ny":        "data: x\ndata: y\n\n",
	} {
		if got := string(appendEvent(nil, []byte(payload))); got != want {
			t.Errorf("event of %q: %q, want %q", payload, got, want)
		}
	}
}

func TestPreparedForEachTransport(t *testing.T) {
	payload := []byte(`{"type":"push","id":"m1"}`)
	p := Prepare(payload)
	if got := p.frameFor(&Conn{Transport: Poll}); string(got) != string(payload) {
		t.Errorf("poll: %q", got)
	}
	if got := p.frameFor(&Conn{Transport: SSE}); string(got) != "data: "+string(payload)+"\n\n" {
		t.Errorf("sse: %q", got)
	}
	if got := p.frameFor(&Conn{}); got[0] != 0x80|wsframe.OpText || string(got[2:]) != string(payload) {
		t.Errorf("websocket: %q", got)
	}
}

// pollConn is a Poll connection whose onClose calls are counted.
func pollConn(t *testing.T, maxQueue int) (*Conn, *atomic.Int32, *atomic.Int32) {
	var calls, code atomic.Int32
	c := NewPollConn(maxQueue, func(_ *Conn, cd int, _ string) { calls.Add(1); code.Store(int32(cd)) })
	if err := c.Start([]byte(`{"type":"welcome"}`)); err != nil {
		t.Fatal(err)
	}
	return c, &calls, &code
}

func types(t *testing.T, frames [][]byte) string {
	var out []string
	for _, f := range frames {
		var m struct{ Type string }
		if err := json.Unmarshal(f, &m); err != nil {
			t.Fatalf("frame %q: %v", f, err)
		}
		out = append(out, m.Type)
	}
	return strings.Join(out, ",")
}

func TestPollConnQueuesUntilTaken(t *testing.T) {
	c, _, _ := pollConn(t, 1<<10)
	c.WriteFrame([]byte(`{"type":"a"}`))
	c.Write(Prepare([]byte(`{"type":"b"}`)))
	frames, closed := c.Take(context.Background(), time.Second)
	if got := types(t, frames); got != "welcome,a,b" || closed {
		t.Fatalf("took %s (closed %v), want welcome,a,b", got, closed)
	}
	if frames, _ := c.Take(context.Background(), 0); len(frames) != 0 {
		t.Fatalf("second take %q, want nothing", frames)
	}

	// A waiting take is woken by a write.
	done := make(chan [][]byte)
	go func() { f, _ := c.Take(context.Background(), 10*time.Second); done <- f }()
	for !c.Waiting() {
		time.Sleep(time.Millisecond)
	}
	c.WriteFrame([]byte(`{"type":"c"}`))
	select {
	case f := <-done:
		if types(t, f) != "c" {
			t.Fatalf("woken take %q", f)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the write did not wake the waiting take")
	}
}

func TestPollConnNewerTakeSupersedes(t *testing.T) {
	c, _, _ := pollConn(t, 1<<10)
	c.Take(context.Background(), 0) // the welcome
	older := make(chan [][]byte)
	go func() { f, _ := c.Take(context.Background(), 10*time.Second); older <- f }()
	for !c.Waiting() {
		time.Sleep(time.Millisecond)
	}
	newer := make(chan [][]byte)
	go func() { f, _ := c.Take(context.Background(), 10*time.Second); newer <- f }()
	select {
	case f := <-older:
		if len(f) != 0 {
			t.Fatalf("superseded take got %q, want nothing", f)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the older take was not ended by the newer")
	}
	c.WriteFrame([]byte(`{"type":"d"}`))
	if f := <-newer; types(t, f) != "d" {
		t.Fatalf("newer take %q", f)
	}
}

func TestPollConnClose(t *testing.T) {
	c, calls, code := pollConn(t, 1<<10)
	c.WriteFrame([]byte(`{"type":"reconnect"}`))
	c.Close(1012, "draining")
	c.Close(1000, "again") // a second close changes nothing
	if calls.Load() != 1 || code.Load() != 1012 {
		t.Fatalf("onClose called %d times, code %d; want once with 1012", calls.Load(), code.Load())
	}
	if err := c.WriteFrame([]byte(`{"type":"late"}`)); err != ErrClosed {
		t.Fatalf("write after close: %v", err)
	}
	frames, closed := c.Take(context.Background(), time.Second)
	if got := types(t, frames); got != "welcome,reconnect,close" || !closed {
		t.Fatalf("took %s (closed %v), want the frames then the close", got, closed)
	}
	if !strings.Contains(string(frames[2]), `"code":1012`) {
		t.Fatalf("close frame %s", frames[2])
	}
}

func TestPollConnOverflowClosesSlow(t *testing.T) {
	c, calls, code := pollConn(t, 64)
	big := []byte(`{"type":"x","pad":"` + strings.Repeat("p", 80) + `"}`)
	if err := c.WriteFrame(big); err != ErrSlow {
		t.Fatalf("write over the queue limit: %v, want ErrSlow", err)
	}
	if calls.Load() != 1 || code.Load() != closeSlow {
		t.Fatalf("onClose %d times, code %d; want once with %d", calls.Load(), code.Load(), closeSlow)
	}
	if frames, closed := c.Take(context.Background(), 0); !closed || types(t, frames) != "close" {
		t.Fatalf("after overflow took %q closed %v, want only the close frame", frames, closed)
	}
}

func TestPollConnAbortSkipsOnClose(t *testing.T) {
	var calls atomic.Int32
	c := NewPollConn(1<<10, func(*Conn, int, string) { calls.Add(1) })
	c.Abort(1013, "route failed")
	if calls.Load() != 0 || !c.Closed() {
		t.Fatalf("abort: onClose %d times, closed %v; want no call, closed", calls.Load(), c.Closed())
	}
}
