package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/heraldpush/herald/pkg/health"
	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/netpoll"
	"github.com/heraldpush/herald/pkg/token"
	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/services/push-server/internal/wsconn"
)

// The public listener serves WebSocket upgrades itself (upgrade.go) and hands every other request to
// net/http: the HTTP transports for networks that break WebSocket (GET /sse, GET /poll, POST /send)
// and the load balancer's probes. Every transport carries the same frames and ends up as a
// wsconn.Conn in the hub, so pushes, acks, replay, kick and drain do not know which one a device uses.

// publicHandler lists every endpoint of the public listener but /ws.
func (s *server) publicHandler() http.Handler {
	origins := s.cfg.AllowedOrigins
	if len(origins) == 0 {
		origins = []string{"*"} // as for WebSocket: with no list, pages from anywhere may connect
	}
	wrap := func(route string, h http.HandlerFunc) http.Handler {
		return s.metrics.http.Wrap(s.logger, route, httpapi.CORS(origins, []string{http.MethodGet, http.MethodPost}, h))
	}
	getOnly := func(h http.HandlerFunc) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Method != http.MethodGet { // the mux lets HEAD through GET patterns; it must not open sessions
				w.Header().Set("Allow", "GET")
				httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeMethodNotAllow, "%s opens no session; use GET", r.Method))
				return
			}
			h(w, r)
		}
	}
	mux := http.NewServeMux()
	sse, poll, send := wrap("sse", getOnly(s.handleSSE)), wrap("poll", getOnly(s.handlePoll)), wrap("send", s.handleSend)
	mux.Handle("GET /sse", sse)
	mux.Handle("GET /poll", poll)
	mux.Handle("POST /send", send)
	mux.Handle("OPTIONS /send", send) // preflight: the client posts JSON
	mux.Handle("GET /ws", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Only the first request on a connection can be upgraded (the router looks at no other).
		httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeInvalidRequest, "a WebSocket upgrade must be the first request on its connection"))
	}))
	mux.Handle("GET /healthz", health.Healthz())
	mux.Handle("GET /readyz", health.Readyz(2*time.Second, s.ready...))
	mux.Handle("/", httpapi.Unrouted(mux, "/"))
	return mux
}

// requestToken is the token a request carries: ?token= (what EventSource can send) or Authorization:
// Bearer; "" when none.
func requestToken(r *http.Request) string {
	if tok := r.URL.Query().Get("token"); tok != "" {
		return tok
	}
	tok, _ := httpapi.BearerToken(r)
	return tok
}

// admitHTTP runs the upgrade's checks for a request opening an SSE stream or a long-poll session. It
// counts the session as pending until open takes it over, or refuses it.
func (s *server) admitHTTP(r *http.Request) (handshakeState, *refusal) {
	hs := handshakeState{token: requestToken(r)}
	s.pending.Add(1)
	ref := s.admit(&hs)
	if ref != nil {
		s.pending.Add(-1)
	}
	return hs, ref
}

func writeRefusal(w http.ResponseWriter, ref *refusal) {
	for k, v := range ref.header {
		w.Header()[k] = v
	}
	httpapi.WriteJSON(w, ref.status, ref.body)
}

// handleSSE opens an event stream: the response's head is written by hand, then its socket leaves
// net/http for the engine, so an idle stream holds no goroutine, as a WebSocket.
func (s *server) handleSSE(w http.ResponseWriter, r *http.Request) {
	hs, ref := s.admitHTTP(r)
	if ref != nil {
		writeRefusal(w, ref)
		return
	}
	fd, err := s.hijack(w, "Content-Type: text/event-stream\r\nCache-Control: no-store\r\nX-Accel-Buffering: no\r\n")
	if err != nil {
		s.pending.Add(-1)
		s.logger.Debug("sse stream lost before it began", "err", err)
		return
	}
	c := wsconn.NewConn(fd, s.cfg.MaxQueue)
	c.Transport = wsconn.SSE
	s.open(c, hs) // a failure is told on the stream itself, as a close frame
}

// hijack takes the request's connection from net/http, writes a 200 head with extra (and the CORS
// headers already set) and returns the socket's descriptor for the engine.
func (s *server) hijack(w http.ResponseWriter, extra string) (int, error) {
	var head strings.Builder
	head.WriteString("HTTP/1.1 200 OK\r\n" + extra + "Connection: close\r\n")
	w.Header().Write(&head)
	head.WriteString("\r\n")
	nc, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return -1, err
	}
	defer nc.Close() // the descriptor lives on as a duplicate (netpoll.Detach)
	nc.SetWriteDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	if _, err := io.WriteString(nc, head.String()); err != nil {
		return -1, err
	}
	if pc, ok := nc.(*routedConn); ok {
		nc = pc.Conn
	}
	return netpoll.Detach(nc)
}

// handlePoll opens a long-poll session (?token=, answered with its welcome at once) or waits on one
// (?session=) for up to -poll-timeout, answering what was queued as a JSON array of frames.
func (s *server) handlePoll(w http.ResponseWriter, r *http.Request) {
	if id := r.URL.Query().Get("session"); id != "" {
		sess, err := s.findSession(r, id)
		if err != nil {
			httpapi.WriteError(w, err)
			return
		}
		if sess.c.Transport != wsconn.Poll {
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeInvalidRequest, "this session is an event stream (/sse); only long-poll sessions are polled"))
			return
		}
		http.NewResponseController(w).SetWriteDeadline(time.Now().Add(s.cfg.PollTimeout + 10*time.Second))
		frames, closed := sess.c.Take(r.Context(), s.cfg.PollTimeout)
		if closed {
			s.sessions.remove(s.connID(sess.c)) // its last frames are in this answer
		}
		writeFrames(w, frames)
		return
	}
	hs, ref := s.admitHTTP(r)
	if ref != nil {
		writeRefusal(w, ref)
		return
	}
	c := wsconn.NewPollConn(s.cfg.MaxQueue, s.OnClose)
	if err := s.open(c, hs); err != nil {
		httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeUnavailable, "cannot record the route; retry"))
		return
	}
	frames, _ := c.Take(r.Context(), 0)
	writeFrames(w, frames)
}

// writeFrames answers a poll: the frames' JSON in one array.
func writeFrames(w http.ResponseWriter, frames [][]byte) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	body := []byte{'['}
	for i, f := range frames {
		if i > 0 {
			body = append(body, ',')
		}
		body = append(body, f...)
	}
	w.Write(append(body, ']'))
}

// handleSend takes one client frame, or a JSON array of them, for an SSE or long-poll session; what
// they cause (pong, up_ack, error frames) comes back on the session's stream or poll.
func (s *server) handleSend(w http.ResponseWriter, r *http.Request) {
	sess, err := s.findSession(r, r.URL.Query().Get("session"))
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	// No server-wide read timeout (it would cut long polls): a body trickled in is cut here.
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, int64(s.cfg.MaxSendBody)))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeBodyTooLarge, "body over %d bytes (-max-send-body)", s.cfg.MaxSendBody))
			return
		}
		httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeInvalidRequest, "reading the body: %v", err))
		return
	}
	frames, err := splitFrames(body)
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	for _, f := range frames {
		if len(f) > s.cfg.MaxFrame {
			// A WebSocket closes with 1009 here; the session stays, and the caller learns which limit.
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeBodyTooLarge, "a frame of %d bytes is over -max-frame (%d)", len(f), s.cfg.MaxFrame))
			return
		}
	}
	if sess.c.Closed() {
		httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeUnauthorized, "the session is closed: connect again"))
		return
	}
	types := frameTypes(frames)
	if ups := countOf(types, wire.TypeUp); ups > 0 && int(sess.c.UpInFlight.Load())+ups > s.cfg.MaxUpInFlight {
		// A WebSocket's reads pause here; a request can only be refused until up_acks arrive.
		httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeRateLimited, "%d up frames here and %d waiting for Kafka: over -max-up-inflight (%d); send them again after an up_ack", ups, sess.c.UpInFlight.Load(), s.cfg.MaxUpInFlight))
		return
	}
	sess.mu.Lock()
	sess.c.Touch()
	for i, f := range frames {
		if sess.c.Closed() {
			break
		}
		if types[i] == wire.TypeClose {
			// An HTTP session has no close frame of its own: a client that leaves says so, and its
			// session and route go now rather than after three heartbeats.
			sess.c.Close(wire.CloseNormal, "closed by the client")
			break
		}
		s.OnMessage(sess.c, f)
	}
	sess.mu.Unlock()
	w.WriteHeader(http.StatusNoContent)
}

// frameTypes is the "type" of each frame ("" where there is none).
func frameTypes(frames [][]byte) []string {
	types := make([]string, len(frames))
	for i, f := range frames {
		var in struct{ Type string }
		if json.Unmarshal(f, &in) == nil {
			types[i] = in.Type
		}
	}
	return types
}

func countOf(types []string, typ string) int {
	n := 0
	for _, t := range types {
		if t == typ {
			n++
		}
	}
	return n
}

// splitFrames reads a /send body: one frame, or an array of frames.
func splitFrames(body []byte) ([][]byte, error) {
	body = bytes.TrimSpace(body)
	if !json.Valid(body) {
		return nil, httpapi.Errorf(httpapi.CodeMalformedJSON, "the body must be one frame (a JSON object) or a JSON array of frames")
	}
	if len(body) == 0 || body[0] != '[' {
		return [][]byte{body}, nil
	}
	var list []json.RawMessage
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, httpapi.Errorf(httpapi.CodeMalformedJSON, "the body must be one frame (a JSON object) or a JSON array of frames")
	}
	if len(list) == 0 {
		return nil, httpapi.Errorf(httpapi.CodeInvalidRequest, "no frames in the array")
	}
	frames := make([][]byte, len(list))
	for i, f := range list {
		frames[i] = f
	}
	return frames, nil
}

// findSession finds the session a request names. A request may carry its user's token too
// (?token= or Authorization: Bearer): then it must verify and be the session's user's. An expired
// token is told as such; the session itself outlives its token, as an open WebSocket does.
func (s *server) findSession(r *http.Request, session string) (*httpSession, error) {
	tok := requestToken(r)
	uid := ""
	if tok != "" {
		claims, err := s.verifier.Verify(tok)
		reason := token.Reason(err)
		switch {
		case reason == "expired":
			return nil, httpapi.Errorf(httpapi.CodeTokenExpired, "the token beside the session has expired; send the session alone, or a fresh token")
		case err != nil:
			return nil, httpapi.Errorf(httpapi.CodeUnauthorized, "invalid token beside the session: %s", tokenFault(reason))
		}
		uid = claims.UID
	}
	return s.sessions.find(session, uid)
}

// routedConn is a public connection handed to net/http after the router read the start of its first
// request: reads begin with those bytes.
type routedConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *routedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// connQueue is the listener net/http serves the public listener's HTTP requests from: the accept
// loop routes connections into it.
type connQueue struct {
	addr   net.Addr
	conns  chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, conns: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) push(c net.Conn) {
	select {
	case q.conns <- c:
	case <-q.done:
		c.Close()
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.closed.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// servePublicHTTP serves the HTTP requests the accept loop routes to q until stop; then it gives open
// requests (polls, which a drain has answered) a few seconds.
func (s *server) servePublicHTTP(q *connQueue) (stop func()) {
	srv := &http.Server{
		Handler:           s.publicHandler(),
		ReadHeaderTimeout: s.cfg.HandshakeTimeout,
		IdleTimeout:       s.cfg.PollTimeout + 30*time.Second, // a polling client comes back at once
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.Serve(q)
	}()
	return func() {
		q.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if srv.Shutdown(ctx) != nil {
			srv.Close()
		}
		<-done
	}
}

// sessionTable finds the connections of the HTTP transports by the session their welcome carried:
// "<conn id>.<secret>". A connection's id is no secret (push-route and admin show it); the secret is.
type sessionTable struct {
	m sync.Map // conn id → *httpSession
}

type httpSession struct {
	c      *wsconn.Conn
	secret string
	// mu serializes the session's inbound frames: the handler never takes two of one connection at
	// once, whichever transport they came by.
	mu sync.Mutex
}

func (t *sessionTable) add(id string, c *wsconn.Conn) (session string) {
	sess := &httpSession{c: c, secret: rand.Text()}
	t.m.Store(id, sess)
	return id + "." + sess.secret
}

func (t *sessionTable) remove(id string) { t.m.Delete(id) }

// find returns the session named by session; uid, when not empty, is the uid of a token the request
// also carried, which must be the session's.
func (t *sessionTable) find(session, uid string) (*httpSession, error) {
	if session == "" {
		return nil, httpapi.Errorf(httpapi.CodeUnauthorized, "?session= is required: the session of the welcome frame")
	}
	i := strings.LastIndexByte(session, '.')
	if i < 0 {
		return nil, httpapi.Errorf(httpapi.CodeUnauthorized, "not a session: expected <conn id>.<secret> from the welcome frame")
	}
	v, ok := t.m.Load(session[:i])
	if !ok {
		return nil, httpapi.Errorf(httpapi.CodeUnauthorized, "unknown session (closed, expired or on another node): connect again")
	}
	sess := v.(*httpSession)
	if subtle.ConstantTimeCompare([]byte(sess.secret), []byte(session[i+1:])) != 1 {
		return nil, httpapi.Errorf(httpapi.CodeUnauthorized, "the session's secret does not match")
	}
	if uid != "" && uid != sess.c.UID {
		return nil, httpapi.Errorf(httpapi.CodeForbidden, "the session belongs to another user than the token's")
	}
	return sess, nil
}
