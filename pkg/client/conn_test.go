package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldpush/herald/pkg/wire"
)

// dialTest dials s with a fixed token and the welcome of node n1, and closes the connection at the end.
func dialTest(t *testing.T, s *wsServer, cfg Config) (*Conn, *srvConn) {
	t.Helper()
	cfg.Token, cfg.WSURL = "tok-u1", s.url()
	type result struct {
		c   *Conn
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, err := Dial(context.Background(), cfg)
		res <- result{c, err}
	}()
	sc := s.accept()
	sc.welcome("n1")
	r := recv(t, res, "Dial")
	if r.err != nil {
		t.Fatalf("Dial: %v", r.err)
	}
	t.Cleanup(func() {
		// The test no longer plays the server: drop the TCP connection rather than wait for Close's
		// handshake to time out.
		sc.drop()
		r.c.Close()
	})
	return r.c, sc
}

func pushFrame(i int) wire.Push {
	return wire.Push{Type: wire.TypePush, ID: fmt.Sprintf("m%d", i), Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)), TS: int64(i)}
}

func TestDialWelcome(t *testing.T) {
	s := newWSServer(t)
	c, sc := dialTest(t, s, Config{})
	want := wire.Welcome{Type: wire.TypeWelcome, ConnID: "c-n1", Node: "n1", UID: "u1", HeartbeatS: 30}
	if got := c.Welcome(); got != want {
		t.Fatalf("Welcome() = %+v, want %+v", got, want)
	}
	if sc.token != "tok-u1" {
		t.Fatalf("server saw token %q in the Authorization header, want tok-u1", sc.token)
	}
	if c.Err() != nil {
		t.Fatalf("Err() = %v on a live connection", c.Err())
	}
}

func TestDialRefused(t *testing.T) {
	s := newWSServer(t)
	_, err := Dial(context.Background(), Config{Token: "expired", WSURL: s.url()})
	var he *HandshakeError
	if !errors.As(err, &he) {
		t.Fatalf("Dial error = %v, want a *HandshakeError", err)
	}
	if he.Status != 401 || he.Code != "unauthorized" {
		t.Fatalf("HandshakeError = %+v, want status 401, code unauthorized", he)
	}
}

func TestDialConfigRequired(t *testing.T) {
	if _, err := Dial(context.Background(), Config{WSURL: "ws://127.0.0.1:1/ws"}); err == nil {
		t.Fatal("Dial without a token or login details succeeded")
	}
}

func TestPushesInOrder(t *testing.T) {
	s := newWSServer(t)
	// A buffer of one makes the reader wait for the consumer most of the time: back-pressure, not loss.
	c, sc := dialTest(t, s, Config{PushBuffer: 1})
	const n = 200
	go func() {
		for i := range n {
			if err := sc.trySend(pushFrame(i)); err != nil {
				t.Errorf("server write: %v", err)
				return
			}
		}
	}()
	for i := range n {
		p := recv(t, c.Pushes(), "push")
		want := pushFrame(i)
		if p.ID != want.ID || !bytes.Equal(p.Data, want.Data) || p.TS != want.TS {
			t.Fatalf("push %d = %+v, want %+v", i, p, want)
		}
	}
}

func TestPushSplitByPing(t *testing.T) {
	s := newWSServer(t)
	c, sc := dialTest(t, s, Config{})
	msg, _ := json.Marshal(pushFrame(7))
	half := len(msg) / 2
	sc.sendFrameFin(ws.OpText, false, msg[:half])
	sc.sendFrame(ws.OpPing, []byte("mid"))
	sc.sendFrameFin(ws.OpContinuation, true, msg[half:])
	if f := sc.next(); f.op != ws.OpPong || string(f.payload) != "mid" {
		t.Fatalf("client answered %v %q, want a pong with the ping's payload", f.op, f.payload)
	}
	if p := recv(t, c.Pushes(), "push"); p.ID != "m7" {
		t.Fatalf("push id = %q, want m7", p.ID)
	}
}

func TestHeartbeat(t *testing.T) {
	s := newWSServer(t)
	// A short heartbeat to see pings soon; a long read timeout so a slow machine cannot fail the test.
	c, sc := dialTest(t, s, Config{Heartbeat: 10 * time.Millisecond, ReadTimeout: waitLong})
	for range 3 {
		if in := sc.nextJSON(); in.Type != wire.TypePing {
			t.Fatalf("client sent %q, want ping", in.Type)
		}
		sc.send(map[string]string{"type": wire.TypePong})
	}
	sc.sendFrame(ws.OpPing, []byte("hello"))
	for {
		f := sc.next()
		if f.op == ws.OpText {
			continue // more heartbeats
		}
		if f.op != ws.OpPong || string(f.payload) != "hello" {
			t.Fatalf("client answered %v %q, want a pong with the ping's payload", f.op, f.payload)
		}
		break
	}
	select {
	case <-c.Done():
		t.Fatalf("connection ended: %v", c.Err())
	default:
	}
}

func TestSilentServerDetected(t *testing.T) {
	s := newWSServer(t)
	c, _ := dialTest(t, s, Config{Heartbeat: 10 * time.Millisecond, ReadTimeout: 50 * time.Millisecond})
	waitClosed(t, c.Done(), "the end of a connection whose server stopped answering")
	var ne net.Error
	if !errors.As(c.Err(), &ne) || !ne.Timeout() {
		t.Fatalf("Err() = %v, want a read timeout", c.Err())
	}
}

func TestAck(t *testing.T) {
	s := newWSServer(t)
	c, sc := dialTest(t, s, Config{Heartbeat: time.Hour})
	sc.send(pushFrame(1))
	p := recv(t, c.Pushes(), "push")
	if err := c.Ack(context.Background(), p.ID); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	if in := sc.nextJSON(); in.Type != wire.TypeAck || in.ID != "m1" {
		t.Fatalf("client sent %+v, want ack of m1", in)
	}
}

func TestErrorFrames(t *testing.T) {
	s := newWSServer(t)
	c, sc := dialTest(t, s, Config{})
	if err := c.WriteRaw(ws.OpText, []byte(`{"type":"nonsense"}`)); err != nil {
		t.Fatal(err)
	}
	if in := sc.nextJSON(); in.Type != "nonsense" {
		t.Fatalf("server got %+v, want the raw frame", in)
	}
	sc.send(wire.Error{Type: wire.TypeError, Code: wire.CodeUnknownType, Message: "no such type"})
	if e := recv(t, c.Errors(), "error frame"); e.Code != wire.CodeUnknownType {
		t.Fatalf("error frame = %+v, want code %s", e, wire.CodeUnknownType)
	}
}

func TestServerClose(t *testing.T) {
	tests := []struct {
		name      string
		clientRaw []byte // a frame the client sends first, if any
		reconnect bool   // the server sends a reconnect frame before closing
		code      int
	}{
		{
			name:      "frame too big",
			clientRaw: bytes.Repeat([]byte("x"), 100<<10),
			code:      wire.CloseTooBig,
		},
		{
			name:      "bad utf-8",
			clientRaw: []byte("{\"type\":\"ping\xff\"}"),
			code:      wire.CloseInvalidPayload,
		},
		{
			name:      "drain",
			reconnect: true,
			code:      wire.CloseServiceRestart,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newWSServer(t)
			c, sc := dialTest(t, s, Config{Heartbeat: time.Hour})
			if tt.clientRaw != nil {
				if err := c.WriteRaw(ws.OpText, tt.clientRaw); err != nil {
					t.Fatal(err)
				}
				if f := sc.next(); !bytes.Equal(f.payload, tt.clientRaw) {
					t.Fatalf("server got %d bytes, want the %d the client wrote", len(f.payload), len(tt.clientRaw))
				}
			}
			if tt.reconnect {
				sc.send(wire.Reconnect{Type: wire.TypeReconnect, Reason: "draining"})
			}
			sc.closeWith(tt.code, "bye")
			waitClosed(t, c.Done(), "the end of the connection")
			var ce *CloseError
			if !errors.As(c.Err(), &ce) || ce.Code != tt.code || ce.Reason != "bye" {
				t.Fatalf("Err() = %v, want CloseError{%d, bye}", c.Err(), tt.code)
			}
			if r, ok := c.ReconnectFrame(); ok != tt.reconnect || (ok && r.Reason != "draining") {
				t.Fatalf("ReconnectFrame() = %+v, %v; want reconnect %v", r, ok, tt.reconnect)
			}
			if _, open := <-c.Pushes(); open {
				t.Fatal("Pushes() still open after the end")
			}
		})
	}
}

func TestClose(t *testing.T) {
	s := newWSServer(t)
	c, sc := dialTest(t, s, Config{Heartbeat: time.Hour})
	closed := make(chan error, 1)
	go func() { closed <- c.Close() }()
	f := sc.next()
	if f.op != ws.OpClose {
		t.Fatalf("client sent %v, want a close frame", f.op)
	}
	if code, _ := ws.ParseCloseFrameData(f.payload); code != wire.CloseNormal {
		t.Fatalf("close code %d, want %d", code, wire.CloseNormal)
	}
	sc.sendFrame(ws.OpClose, f.payload)
	if err := recv(t, closed, "Close"); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !errors.Is(c.Err(), ErrClosed) {
		t.Fatalf("Err() = %v, want ErrClosed", c.Err())
	}
	if err := c.Ack(context.Background(), "m1"); !errors.Is(err, ErrClosed) {
		t.Fatalf("Ack after Close = %v, want ErrClosed", err)
	}
}
