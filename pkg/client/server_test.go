package client

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/heraldpush/herald/pkg/wire"
)

// Test fakes of Herald's servers. The push-server fake hands every accepted connection to the test,
// which then plays the server's part step by step; that keeps each test a readable script.

// waitLong bounds every wait in these tests: generous, since they only say "eventually".
const waitLong = 10 * time.Second

// wsServer is a fake push-server: it accepts tokens starting with "tok-" (header only, as the client
// must use the header) and answers others 401 with a Herald error body.
type wsServer struct {
	t     testing.TB
	srv   *httptest.Server
	conns chan *srvConn

	mu  sync.Mutex // guards all
	all []*srvConn
}

func newWSServer(t testing.TB) *wsServer {
	t.Helper()
	s := &wsServer{t: t, conns: make(chan *srvConn, 16)}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer tok-") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":{"code":"unauthorized","message":"bad token"}}`)
			return
		}
		nc, rw, _, err := ws.UpgradeHTTP(r, w)
		if err != nil {
			return
		}
		sc := &srvConn{
			t:     t,
			nc:    nc,
			token: strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer "),
			rd:    wsutil.NewServerSideReader(rw.Reader),
			ended: make(chan struct{}),
		}
		s.mu.Lock()
		s.all = append(s.all, sc)
		s.mu.Unlock()
		s.conns <- sc
		// httptest.Server.Close waits for handlers, so the handler lives as long as the connection.
		<-sc.ended
	}))
	t.Cleanup(func() {
		s.dropAll()
		s.srv.Close()
	})
	return s
}

// dropAll ends every connection, so a client closing at the end of a test need not wait for a close
// answer the test no longer plays.
func (s *wsServer) dropAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, sc := range s.all {
		sc.drop()
	}
}

func (s *wsServer) url() string { return "ws" + strings.TrimPrefix(s.srv.URL, "http") + "/ws" }

// accept waits for the next connection.
func (s *wsServer) accept() *srvConn {
	s.t.Helper()
	select {
	case sc := <-s.conns:
		return sc
	case <-time.After(waitLong):
		s.t.Fatal("no connection arrived")
		return nil
	}
}

// srvConn is the server end of one connection, driven by the test goroutine.
type srvConn struct {
	t       testing.TB
	nc      net.Conn
	token   string
	rd      *wsutil.Reader
	endOnce sync.Once
	ended   chan struct{}
}

type frame struct {
	op      ws.OpCode
	payload []byte
}

func (sc *srvConn) send(v any) {
	sc.t.Helper()
	if err := sc.trySend(v); err != nil {
		sc.t.Fatalf("server write: %v", err)
	}
}

// trySend is send for goroutines other than the test's, which must not call Fatal.
func (sc *srvConn) trySend(v any) error {
	p, err := json.Marshal(v)
	if err != nil {
		return err
	}
	_ = sc.nc.SetWriteDeadline(time.Now().Add(waitLong))
	return ws.WriteFrame(sc.nc, ws.NewTextFrame(p))
}

func (sc *srvConn) sendFrame(op ws.OpCode, p []byte) {
	sc.t.Helper()
	sc.sendFrameFin(op, true, p)
}

func (sc *srvConn) sendFrameFin(op ws.OpCode, fin bool, p []byte) {
	sc.t.Helper()
	_ = sc.nc.SetWriteDeadline(time.Now().Add(waitLong))
	if err := ws.WriteFrame(sc.nc, ws.NewFrame(op, fin, p)); err != nil {
		sc.t.Fatalf("server write: %v", err)
	}
}

func (sc *srvConn) welcome(node string) {
	sc.t.Helper()
	sc.send(wire.Welcome{Type: wire.TypeWelcome, ConnID: "c-" + node, Node: node, UID: "u1", HeartbeatS: 30})
}

// next reads the next frame of any kind, control frames included, unanswered.
func (sc *srvConn) next() frame {
	sc.t.Helper()
	f, err := sc.tryNext()
	if err != nil {
		sc.t.Fatalf("server read: %v", err)
	}
	return f
}

func (sc *srvConn) tryNext() (frame, error) {
	_ = sc.nc.SetReadDeadline(time.Now().Add(waitLong))
	hdr, err := sc.rd.NextFrame()
	if err != nil {
		return frame{}, err
	}
	p, err := io.ReadAll(sc.rd)
	if err != nil {
		return frame{}, err
	}
	return frame{op: hdr.OpCode, payload: p}, nil
}

// nextJSON reads frames until a text frame and decodes it into an Inbound.
func (sc *srvConn) nextJSON() wire.Inbound {
	sc.t.Helper()
	for {
		f := sc.next()
		if f.op != ws.OpText {
			continue
		}
		var in wire.Inbound
		if err := json.Unmarshal(f.payload, &in); err != nil {
			sc.t.Fatalf("client sent undecodable frame %q: %v", f.payload, err)
		}
		return in
	}
}

// closeWith sends a close frame and waits for the client's answer (or the end of the stream).
func (sc *srvConn) closeWith(code int, reason string) {
	sc.t.Helper()
	sc.sendFrame(ws.OpClose, ws.NewCloseFrameBody(ws.StatusCode(code), reason))
	for {
		f, err := sc.tryNext()
		if err != nil || f.op == ws.OpClose {
			break
		}
	}
	sc.drop()
}

// expectClose reads until the client's close frame, answers it and ends the connection; it returns
// the client's close code.
func (sc *srvConn) expectClose() int {
	sc.t.Helper()
	for {
		f := sc.next()
		if f.op == ws.OpClose {
			sc.sendFrame(ws.OpClose, f.payload)
			sc.drop()
			code, _ := ws.ParseCloseFrameData(f.payload)
			return int(code)
		}
	}
}

// drop ends the connection without a close frame, as a crashed node or a cut cable would.
func (sc *srvConn) drop() {
	sc.endOnce.Do(func() {
		sc.nc.Close()
		close(sc.ended)
	})
}

// authServer is a fake auth service that counts logins and sends everyone to the ws_urls it is given,
// in turn (the last one repeats).
type authServer struct {
	srv    *httptest.Server
	mu     sync.Mutex
	logins int
	urls   []string
	tokens []string
	failed []string // each login's failed_node
}

func newAuthServer(t testing.TB, urls ...string) *authServer {
	t.Helper()
	a := &authServer{urls: urls}
	a.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			UID, Password, Device string
			FailedNode            string `json:"failed_node"`
		}
		if r.URL.Path != "/v1/login" || json.NewDecoder(r.Body).Decode(&req) != nil || req.Password != "secret" {
			w.WriteHeader(http.StatusUnauthorized)
			_, _ = io.WriteString(w, `{"error":{"code":"bad_credentials","message":"unknown uid or wrong password"}}`)
			return
		}
		a.mu.Lock()
		n := a.logins
		a.logins++
		a.failed = append(a.failed, req.FailedNode)
		url := a.urls[min(n, len(a.urls)-1)]
		tok := "tok-" + req.UID
		if n < len(a.tokens) {
			tok = a.tokens[n]
		}
		a.mu.Unlock()
		_ = json.NewEncoder(w).Encode(map[string]any{
			"token":      tok,
			"expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339),
			"server":     map[string]string{"id": "n1", "ws_url": url},
		})
	}))
	t.Cleanup(a.srv.Close)
	return a
}

func (a *authServer) count() int {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.logins
}

// eventually polls cond until it holds or waitLong passes.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// recv takes one value from ch or fails the test.
func recv[T any](t testing.TB, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v, ok := <-ch:
		if !ok {
			t.Fatalf("%s: channel closed", what)
		}
		return v
	case <-time.After(waitLong):
		t.Fatalf("timed out waiting for %s", what)
	}
	var zero T
	return zero
}

// waitClosed waits for ch to be closed or fails the test.
func waitClosed(t testing.TB, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(waitLong):
		t.Fatalf("timed out waiting for %s", what)
	}
}
