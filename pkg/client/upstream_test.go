package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/wire"
)

// upClient runs a Client against s that resends after upTimeout, and returns it with its first
// connection, welcomed.
func upClient(t *testing.T, s *wsServer, upTimeout time.Duration) (*Client, *srvConn) {
	t.Helper()
	cl := upClientOnly(t, s, upTimeout)
	sc := s.accept()
	sc.welcome("n1")
	recv(t, cl.Connected(), "connection")
	return cl, sc
}

// upClientOnly runs the Client but leaves the first connection to the test.
func upClientOnly(t *testing.T, s *wsServer, upTimeout time.Duration) *Client {
	t.Helper()
	cfg := loginConfig(newAuthServer(t, s.url()).srv.URL)
	cfg.UpTimeout = upTimeout
	cl := New(cfg)
	runClient(t, cl, s)
	return cl
}

type sendResult struct {
	id  string
	err error
}

// sendAsync calls SendRef (Send when ref is empty) in a goroutine, bounded by waitLong.
func sendAsync(t *testing.T, cl *Client, ref, data string) <-chan sendResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	res := make(chan sendResult, 1)
	go func() {
		defer cancel()
		var r sendResult
		if ref == "" {
			r.id, r.err = cl.Send(ctx, json.RawMessage(data))
		} else {
			r.id, r.err = cl.SendRef(ctx, ref, json.RawMessage(data))
		}
		res <- r
	}()
	return res
}

// expectUp reads the next text frame and checks that it is an up frame with data.
func (sc *srvConn) expectUp(data string) wire.Inbound {
	sc.t.Helper()
	in := sc.nextJSON()
	if in.Type != wire.TypeUp || in.Ref == "" || string(in.Data) != data {
		sc.t.Fatalf("client sent %+v (data %s), want an up frame with a ref and data %s", in, in.Data, data)
	}
	return in
}

func (sc *srvConn) upAck(ref string) string {
	sc.t.Helper()
	id := wire.UpstreamID("u1", "d1", ref)
	sc.send(wire.UpAck{Type: wire.TypeUpAck, Ref: ref, ID: id})
	return id
}

func wantAcked(t *testing.T, res <-chan sendResult, id string) {
	t.Helper()
	r := recv(t, res, "Send to return")
	if r.err != nil || r.id != id {
		t.Fatalf("Send = %q, %v; want %q, nil", r.id, r.err, id)
	}
}

func noErrorFrames(t *testing.T, cl *Client) {
	t.Helper()
	select {
	case e := <-cl.Errors():
		t.Fatalf("Errors() got %+v, which a Send was waiting for", e)
	default:
	}
}

func TestSendAcked(t *testing.T) {
	s := newWSServer(t)
	cl := upClientOnly(t, s, waitLong)
	sc := s.accept()
	// Sent before there is a connection: it waits for one.
	res := sendAsync(t, cl, "", `{"n":1}`)
	sc.welcome("n1")
	in := sc.expectUp(`{"n":1}`)
	if len(in.Ref) < 16 {
		t.Fatalf("ref %q is too short to be unique", in.Ref)
	}
	wantAcked(t, res, sc.upAck(in.Ref))
}

func TestSendResendsUnanswered(t *testing.T) {
	s := newWSServer(t)
	cl, sc := upClient(t, s, 20*time.Millisecond)
	res := sendAsync(t, cl, "", `{"n":1}`)
	first := sc.expectUp(`{"n":1}`) // lost on the server, say
	second := sc.expectUp(`{"n":1}`)
	if second.Ref != first.Ref {
		t.Fatalf("resend has ref %q, want the first's %q", second.Ref, first.Ref)
	}
	wantAcked(t, res, sc.upAck(second.Ref))
}

func TestSendRetryableError(t *testing.T) {
	for _, code := range []string{wire.CodeUnavailable, wire.CodeRateLimited} {
		t.Run(code, func(t *testing.T) {
			s := newWSServer(t)
			cl, sc := upClient(t, s, waitLong)
			res := sendAsync(t, cl, "", `{"n":1}`)
			first := sc.expectUp(`{"n":1}`)
			sc.send(wire.Error{Type: wire.TypeError, Ref: first.Ref, Code: code, Message: "try again"})
			if again := sc.expectUp(`{"n":1}`); again.Ref != first.Ref {
				t.Fatalf("resend has ref %q, want the first's %q", again.Ref, first.Ref)
			}
			wantAcked(t, res, sc.upAck(first.Ref))
			noErrorFrames(t, cl)
		})
	}
}

func TestSendResendsAfterDrop(t *testing.T) {
	s := newWSServer(t)
	cl, sc := upClient(t, s, waitLong)
	res := sendAsync(t, cl, "", `{"n":1}`)
	first := sc.expectUp(`{"n":1}`)
	sc.drop() // the node died before it answered

	sc = s.accept()
	sc.welcome("n2")
	if again := sc.expectUp(`{"n":1}`); again.Ref != first.Ref {
		t.Fatalf("resend on the new connection has ref %q, want the first's %q", again.Ref, first.Ref)
	}
	wantAcked(t, res, sc.upAck(first.Ref))
}

func TestSendRefused(t *testing.T) {
	for _, code := range []string{wire.CodeTooLarge, wire.CodeBadRequest, wire.CodeUnsupported} {
		t.Run(code, func(t *testing.T) {
			s := newWSServer(t)
			cl, sc := upClient(t, s, waitLong)
			res := sendAsync(t, cl, "r1", `{"n":1}`)
			sc.expectUp(`{"n":1}`)
			sc.send(wire.Error{Type: wire.TypeError, Ref: "r1", Code: code, Message: "no"})
			r := recv(t, res, "Send to fail")
			var fe *FrameError
			if !errors.As(r.err, &fe) || fe.Code != code || fe.Message != "no" || fe.Ref != "r1" || fe.Retryable() {
				t.Fatalf("Send = %q, %v; want a final *FrameError with code %s", r.id, r.err, code)
			}
			noErrorFrames(t, cl)

			// Nothing was resent before Send returned: the next frame is the next send's.
			res = sendAsync(t, cl, "r2", `{"n":2}`)
			if in := sc.expectUp(`{"n":2}`); in.Ref != "r2" {
				t.Fatalf("next frame has ref %q, want r2", in.Ref)
			}
			wantAcked(t, res, sc.upAck("r2"))
		})
	}
}

func TestSendConcurrent(t *testing.T) {
	s := newWSServer(t)
	cl, sc := upClient(t, s, waitLong)
	const n = 20
	results := make([]<-chan sendResult, n)
	for i := range n {
		results[i] = sendAsync(t, cl, "", fmt.Sprintf(`{"n":%d}`, i))
	}
	refs := make(map[string]int) // ref → n of its data
	for range n {
		in := sc.nextJSON()
		var d struct{ N int }
		if in.Type != wire.TypeUp || json.Unmarshal(in.Data, &d) != nil {
			t.Fatalf("client sent %+v, want an up frame", in)
		}
		if prev, dup := refs[in.Ref]; dup {
			t.Fatalf("sends %d and %d share ref %q", prev, d.N, in.Ref)
		}
		refs[in.Ref] = d.N
	}
	// Answer in another order than asked: each Send must get its own ack.
	for ref, i := range refs {
		sc.send(wire.UpAck{Type: wire.TypeUpAck, Ref: ref, ID: fmt.Sprintf("id-%d", i)})
	}
	for i, res := range results {
		wantAcked(t, res, fmt.Sprintf("id-%d", i))
	}
}

func TestSendRefPending(t *testing.T) {
	s := newWSServer(t)
	cl, sc := upClient(t, s, waitLong)
	res := sendAsync(t, cl, "r1", `{"n":1}`)
	sc.expectUp(`{"n":1}`)
	if _, err := cl.SendRef(context.Background(), "r1", json.RawMessage(`{"n":1}`)); !errors.Is(err, ErrRefPending) {
		t.Fatalf("second SendRef with a pending ref = %v, want ErrRefPending", err)
	}
	wantAcked(t, res, sc.upAck("r1"))
}

func TestSendContextEnds(t *testing.T) {
	s := newWSServer(t)
	cl, sc := upClient(t, s, waitLong)
	ctx, cancel := context.WithCancel(context.Background())
	res := make(chan sendResult, 1)
	go func() {
		id, err := cl.SendRef(ctx, "r1", json.RawMessage(`{"n":1}`))
		res <- sendResult{id, err}
	}()
	sc.expectUp(`{"n":1}`)
	cancel()
	if r := recv(t, res, "Send to return"); !errors.Is(r.err, context.Canceled) {
		t.Fatalf("Send = %q, %v; want context.Canceled", r.id, r.err)
	}
	// Nobody waits for r1 any more: its late answers are plain error frames again.
	sc.upAck("r1")
	sc.send(wire.Error{Type: wire.TypeError, Ref: "r1", Code: wire.CodeUnavailable, Message: "late"})
	if e := recv(t, cl.Errors(), "error frame"); e.Ref != "r1" || e.Message != "late" {
		t.Fatalf("Errors() got %+v, want the late error of r1", e)
	}
}

func TestSendAfterStop(t *testing.T) {
	s := newWSServer(t)
	cfg := loginConfig(newAuthServer(t, s.url()).srv.URL)
	cl := New(cfg)
	cancel, done := runClient(t, cl, s)
	sc := s.accept()
	sc.welcome("n1")
	recv(t, cl.Connected(), "connection")
	cancel()
	sc.expectClose()
	recv(t, done, "Run to return")
	if _, err := cl.Send(context.Background(), json.RawMessage(`{"n":1}`)); !errors.Is(err, ErrStopped) {
		t.Fatalf("Send after Run returned = %v, want ErrStopped", err)
	}
}

func TestSendTooBigForServer(t *testing.T) {
	s := newWSServer(t)
	cl, sc := upClient(t, s, waitLong)
	big := `"` + strings.Repeat("x", 1000) + `"`
	small := sendAsync(t, cl, "small", `{"n":1}`)
	sc.expectUp(`{"n":1}`)
	res := sendAsync(t, cl, "big", big)
	sc.expectUp(big)
	sc.closeWith(wire.CloseTooBig, "frame too big")

	r := recv(t, res, "Send of the big frame to fail")
	var ce *CloseError
	if !errors.As(r.err, &ce) || ce.Code != wire.CloseTooBig {
		t.Fatalf("Send = %q, %v; want a *CloseError with code %d", r.id, r.err, wire.CloseTooBig)
	}
	// The small frame was not to blame: it goes out again on the next connection.
	sc = s.accept()
	sc.welcome("n1")
	sc.expectUp(`{"n":1}`)
	wantAcked(t, small, sc.upAck("small"))
}

func TestSendBadInput(t *testing.T) {
	cl := New(Config{Token: "tok-u1", WSURL: "ws://127.0.0.1:1/ws"}) // never run: input is checked first
	tests := []struct {
		name, ref, data string
	}{
		{"no ref", "", `{"n":1}`},
		{"no data", "r1", ``},
		{"data not JSON", "r1", `{"n":`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := cl.SendRef(context.Background(), tt.ref, json.RawMessage(tt.data)); err == nil {
				t.Fatal("SendRef succeeded")
			}
		})
	}
}

func TestConnSendRef(t *testing.T) {
	t.Run("acked", func(t *testing.T) {
		s := newWSServer(t)
		c, sc := dialTest(t, s, Config{Heartbeat: time.Hour})
		ref := NewRef()
		res := connSendAsync(c, ref)
		sc.expectUp(`{"n":1}`)
		wantAcked(t, res, sc.upAck(ref))
	})
	t.Run("error frame", func(t *testing.T) {
		s := newWSServer(t)
		c, sc := dialTest(t, s, Config{Heartbeat: time.Hour})
		res := connSendAsync(c, "r1")
		sc.expectUp(`{"n":1}`)
		// An error for another ref is nobody's answer: it goes to Errors().
		sc.send(wire.Error{Type: wire.TypeError, Ref: "other", Code: wire.CodeUnavailable, Message: "x"})
		if e := recv(t, c.Errors(), "error frame"); e.Ref != "other" {
			t.Fatalf("Errors() got %+v, want the error of ref other", e)
		}
		sc.send(wire.Error{Type: wire.TypeError, Ref: "r1", Code: wire.CodeUnavailable, Message: "kafka down"})
		r := recv(t, res, "SendRef to return")
		var fe *FrameError
		if !errors.As(r.err, &fe) || fe.Code != wire.CodeUnavailable || !fe.Retryable() {
			t.Fatalf("SendRef = %q, %v; want a retryable *FrameError", r.id, r.err)
		}
	})
	t.Run("connection ends", func(t *testing.T) {
		s := newWSServer(t)
		c, sc := dialTest(t, s, Config{Heartbeat: time.Hour})
		res := connSendAsync(c, "r1")
		sc.expectUp(`{"n":1}`)
		sc.drop()
		if r := recv(t, res, "SendRef to return"); r.err == nil {
			t.Fatalf("SendRef = %q, nil after the connection ended", r.id)
		}
	})
}

func connSendAsync(c *Conn, ref string) <-chan sendResult {
	ctx, cancel := context.WithTimeout(context.Background(), waitLong)
	res := make(chan sendResult, 1)
	go func() {
		defer cancel()
		id, err := c.SendRef(ctx, ref, json.RawMessage(`{"n":1}`))
		res <- sendResult{id, err}
	}()
	return res
}

func TestUpTableConcurrent(t *testing.T) {
	// Sends come and go while the reader routes answers: the table must stay consistent (-race).
	tab := newUpTable()
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 200 {
				ref := fmt.Sprintf("r%d-%d", i, j)
				w, err := tab.register(ref)
				if err != nil {
					t.Errorf("register %s: %v", ref, err)
					return
				}
				tab.ack(wire.UpAck{Ref: ref, ID: "id-" + ref})
				if id := <-w.acked; id != "id-"+ref {
					t.Errorf("waiter of %s got %s", ref, id)
				}
				tab.unregister(ref)
			}
		})
	}
	wg.Wait()
	if len(tab.waiters) != 0 {
		t.Fatalf("%d waiters left", len(tab.waiters))
	}
}
