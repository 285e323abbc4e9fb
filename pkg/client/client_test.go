package client

import (
	"context"
	"errors"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/wire"
)

// runClient starts cl.Run and returns its cancel and result. At the end of the test it stops Run and
// drops the connections of s (when not nil) rather than play the server's part of the close.
func runClient(t *testing.T, cl *Client, s *wsServer) (context.CancelFunc, <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- cl.Run(ctx)
		close(done) // so the cleanup does not wait for a value the test took
	}()
	t.Cleanup(func() {
		cancel()
		if s != nil {
			s.dropAll()
		}
		select {
		case <-done:
		case <-time.After(waitLong):
			t.Error("Run did not return after cancel")
		}
	})
	return cancel, done
}

func loginConfig(authURL string) Config {
	return Config{
		AuthURL:    authURL,
		UID:        "u1",
		Device:     "d1",
		Password:   "secret",
		MinBackoff: time.Millisecond,
		MaxBackoff: 10 * time.Millisecond,
		Heartbeat:  time.Hour,
	}
}

// deadURL is a ws_url nobody listens on.
func deadURL(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return "ws://" + addr + "/ws"
}

func TestClientReconnects(t *testing.T) {
	s := newWSServer(t)
	a := newAuthServer(t, s.url())
	cl := New(loginConfig(a.srv.URL))
	cancel, done := runClient(t, cl, s)

	sc := s.accept()
	sc.welcome("first")
	if w := recv(t, cl.Connected(), "first connection"); w.Node != "first" {
		t.Fatalf("connected to %q, want first", w.Node)
	}
	sc.drop() // no close frame: a network failure

	// A plain drop is retried on the same node with the same token: no new login.
	sc = s.accept()
	if a.count() != 1 {
		t.Fatalf("%d logins after a plain drop, want 1", a.count())
	}
	sc.welcome("second")
	recv(t, cl.Connected(), "second connection")
	sc.send(pushFrame(1))
	if p := recv(t, cl.Pushes(), "push on the second connection"); p.ID != "m1" {
		t.Fatalf("push id %q, want m1", p.ID)
	}

	// A draining node sends the client back to auth.
	sc.send(wire.Reconnect{Type: wire.TypeReconnect, Reason: "draining"})
	sc.closeWith(wire.CloseServiceRestart, "draining")
	sc = s.accept()
	if a.count() != 2 {
		t.Fatalf("%d logins after a reconnect frame, want 2", a.count())
	}
	sc.welcome("third")
	if w := recv(t, cl.Connected(), "third connection"); w.Node != "third" {
		t.Fatalf("connected to %q, want third", w.Node)
	}
	sc.send(pushFrame(2))
	if p := recv(t, cl.Pushes(), "push on the third connection"); p.ID != "m2" {
		t.Fatalf("push id %q, want m2", p.ID)
	}

	cancel()
	if code := sc.expectClose(); code != wire.CloseNormal {
		t.Fatalf("client closed with %d, want %d", code, wire.CloseNormal)
	}
	if err := recv(t, done, "Run to return"); err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
	if _, open := <-cl.Pushes(); open {
		t.Fatal("Pushes() still open after Run returned")
	}
}

func TestClientLogsInAgain(t *testing.T) {
	tests := []struct {
		name   string
		first  func(t *testing.T, good string) string // ws_url of the first login
		tokens []string
		failed string // the failed_node the second login names
	}{
		{
			// auth may not know yet that the node is dead: the client tells it.
			name:   "node unreachable",
			first:  func(t *testing.T, _ string) string { return deadURL(t) },
			failed: "n1",
		},
		{
			// The node answered: it is alive, and not named.
			name:   "token rejected",
			first:  func(_ *testing.T, good string) string { return good },
			tokens: []string{"stale"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newWSServer(t)
			a := newAuthServer(t, tt.first(t, s.url()), s.url())
			a.tokens = tt.tokens
			cl := New(loginConfig(a.srv.URL))
			runClient(t, cl, s)

			sc := s.accept()
			if a.count() != 2 {
				t.Fatalf("%d logins, want 2", a.count())
			}
			a.mu.Lock()
			failed := slices.Clone(a.failed)
			a.mu.Unlock()
			if failed[0] != "" || failed[1] != tt.failed {
				t.Fatalf("failed_node of the logins %q, want %q then %q", failed, "", tt.failed)
			}
			sc.welcome("n1")
			recv(t, cl.Connected(), "connection")
		})
	}
}

func TestClientAutoAck(t *testing.T) {
	s := newWSServer(t)
	cfg := loginConfig(newAuthServer(t, s.url()).srv.URL)
	cfg.AutoAck = true
	cl := New(cfg)
	runClient(t, cl, s)

	sc := s.accept()
	sc.welcome("n1")
	sc.send(pushFrame(5))
	if in := sc.nextJSON(); in.Type != wire.TypeAck || in.ID != "m5" {
		t.Fatalf("client sent %+v, want ack of m5", in)
	}
	recv(t, cl.Pushes(), "push")
	eventually(t, "a current connection", func() bool { return cl.current() != nil })
	if err := cl.Ack(context.Background(), "m4"); err != nil {
		t.Fatalf("Ack: %v", err)
	}
	if in := sc.nextJSON(); in.Type != wire.TypeAck || in.ID != "m4" {
		t.Fatalf("client sent %+v, want ack of m4", in)
	}
}

func TestClientGivesUp(t *testing.T) {
	s := newWSServer(t)
	tests := []struct {
		name  string
		cfg   Config
		check func(error) bool
	}{
		{
			name: "wrong password",
			cfg: func() Config {
				cfg := loginConfig(newAuthServer(t, s.url()).srv.URL)
				cfg.Password = "wrong"
				return cfg
			}(),
			check: func(err error) bool {
				var apiErr *APIError
				return errors.As(err, &apiErr) && apiErr.Status == 401 && apiErr.Code == "bad_credentials"
			},
		},
		{
			name: "fixed token rejected",
			cfg:  Config{Token: "revoked", WSURL: s.url(), MinBackoff: time.Millisecond},
			check: func(err error) bool {
				var he *HandshakeError
				return errors.As(err, &he) && he.Status == 401
			},
		},
		{
			name:  "no way to connect",
			cfg:   Config{UID: "u1"},
			check: func(err error) bool { return err != nil },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, done := runClient(t, New(tt.cfg), s)
			if err := recv(t, done, "Run to give up"); !tt.check(err) {
				t.Fatalf("Run = %v", err)
			}
		})
	}
}

func TestClientStopsWhileRetrying(t *testing.T) {
	// Auth is down and the backoff long: cancel must not wait for it.
	cfg := loginConfig(strings.TrimSuffix(strings.Replace(deadURL(t), "ws://", "http://", 1), "/ws"))
	cfg.MinBackoff, cfg.MaxBackoff = time.Hour, time.Hour
	cl := New(cfg)
	cancel, done := runClient(t, cl, nil)
	cancel()
	if err := recv(t, done, "Run to return"); err != nil {
		t.Fatalf("Run = %v, want nil after cancel", err)
	}
	if _, open := <-cl.Connected(); open {
		t.Fatal("Connected() still open after Run returned")
	}
}

func TestBackoff(t *testing.T) {
	lo, hi := 100*time.Millisecond, 10*time.Second
	for n := range 80 {
		ceil := min(hi, lo<<min(n, 20))
		for range 50 {
			if d := backoff(lo, hi, n); d < lo || d > ceil {
				t.Fatalf("backoff(%d) = %v, want within [%v, %v]", n, d, lo, ceil)
			}
		}
	}
	if d := backoff(lo, lo/2, 5); d != lo {
		t.Fatalf("backoff with max below min = %v, want %v", d, lo)
	}
}
