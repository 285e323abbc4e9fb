package main

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldpush/herald/pkg/netpoll"
	"github.com/heraldpush/herald/pkg/routes"
	"github.com/heraldpush/herald/pkg/token"
	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/services/push-server/internal/wsconn"
)

// acceptPublic accepts public connections until ln is closed. Each gets a short-lived goroutine that
// reads the start of its first request: a WebSocket upgrade is handled here, and once upgraded the
// connection is handed to the engine with no goroutine left; anything else goes to net/http
// (httptransport.go).
func (s *server) acceptPublic(ln net.Listener) {
	httpConns := newConnQueue(ln.Addr())
	defer s.servePublicHTTP(httpConns)()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.logger.Warn("accept", "err", err)
			time.Sleep(50 * time.Millisecond) // e.g. out of descriptors: let closes catch up
			continue
		}
		go s.firstRequest(nc, httpConns)
	}
}

// firstRequest sends nc's first request where it belongs: GET /ws to the upgrade, all else to net/http.
func (s *server) firstRequest(nc net.Conn, httpConns *connQueue) {
	nc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))
	// Small: it only holds the request line's start; larger reads pass through it.
	br := bufio.NewReaderSize(nc, 16)
	start, err := br.Peek(len("GET /ws?"))
	if err != nil {
		nc.Close()
		return
	}
	if bytes.Equal(start, []byte("GET /ws?")) || bytes.Equal(start, []byte("GET /ws ")) {
		s.handshake(nc, br)
		return
	}
	nc.SetDeadline(time.Time{}) // net/http sets its own
	httpConns.push(&routedConn{Conn: nc, r: br})
}

// handshakeState collects what the upgrade request says.
type handshakeState struct {
	token  string
	origin string
	binary bool
	claims token.Claims
}

// refusal is an upgrade refused with a JSON error body, written by answer.
type refusal struct {
	status int
	body   wire.ErrorBody
	header http.Header
}

func (r *refusal) Error() string { return r.body.Error.Code + ": " + r.body.Error.Message }

func reject(status int, code, msg string) *refusal {
	return &refusal{status: status, body: wire.ErrorBody{Error: wire.ErrorDetail{Code: code, Message: msg}}}
}

// handshakeConn hands gobwas the connection but keeps its error responses off the wire: gobwas writes
// its own text/plain head (a second Content-Type beside ours), so every refusal is written by answer
// instead, as JSON like every other Herald error. Writes pass once the upgrade is admitted.
type handshakeConn struct {
	net.Conn
	r        io.Reader // the router's reader, which holds the request's first bytes
	admitted bool
}

func (c *handshakeConn) Read(p []byte) (int, error) { return c.r.Read(p) }

func (c *handshakeConn) Write(p []byte) (int, error) {
	if !c.admitted {
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// handshake upgrades a GET /ws whose first bytes the router read into br.
func (s *server) handshake(nc net.Conn, br *bufio.Reader) {
	s.pending.Add(1)
	admitted := false
	defer func() {
		if !admitted {
			s.pending.Add(-1) // an admitted connection stops counting as pending in open
			nc.Close()
		}
	}()

	var hs handshakeState
	conn := &handshakeConn{Conn: nc, r: br}
	u := ws.Upgrader{
		OnRequest: func(uri []byte) error {
			_, query, _ := bytes.Cut(uri, []byte("?"))
			q, err := url.ParseQuery(string(query))
			if err != nil {
				return reject(400, "invalid_request", "bad query string")
			}
			hs.token = q.Get("token")
			switch q.Get("encoding") {
			case "", "json", "text":
			case "binary":
				hs.binary = true
			default:
				return reject(400, "invalid_request", "encoding must be json (text frames) or binary")
			}
			return nil
		},
		OnHeader: func(key, value []byte) error {
			switch {
			case strings.EqualFold(string(key), "Authorization") && hs.token == "":
				scheme, tok, ok := strings.Cut(string(value), " ")
				if ok && strings.EqualFold(scheme, "Bearer") {
					hs.token = strings.TrimSpace(tok)
				}
			case strings.EqualFold(string(key), "Origin"):
				hs.origin = string(value)
			}
			return nil
		},
		OnBeforeUpgrade: func() (ws.HandshakeHeader, error) {
			if ref := s.admit(&hs); ref != nil {
				return nil, ref
			}
			conn.admitted = true
			return nil, nil
		},
	}
	if _, err := u.Upgrade(conn); err != nil {
		status := s.answer(nc, err)
		s.metrics.upgrades.WithLabelValues(upgradeLabel(status)).Inc()
		s.logger.Debug("upgrade refused", "remote", nc.RemoteAddr().String(), "err", err)
		return
	}
	fd, err := netpoll.Detach(nc)
	if err != nil {
		s.logger.Error("detach upgraded connection", "err", err)
		return
	}
	admitted = true
	nc.Close() // the duplicate descriptor lives on; this frees the runtime's poller state
	s.open(wsconn.NewConn(fd, s.cfg.MaxQueue), hs)
}

// admit decides, before answering the upgrade, whether this connection may open. Every refusal is
// counted by reason (herald_ws_refused_total) and its body says which check failed.
func (s *server) admit(hs *handshakeState) *refusal {
	if s.draining.Load() {
		return s.refuse("draining", 503, "draining", "this node is shutting down; log in again")
	}
	if len(s.cfg.AllowedOrigins) > 0 && hs.origin != "" && !slices.Contains(s.cfg.AllowedOrigins, hs.origin) {
		return s.refuse("origin", 403, "forbidden", "origin not allowed")
	}
	if hs.token == "" {
		return s.refuse("no_token", 401, "unauthorized", "a token is required: ?token= or Authorization: Bearer")
	}
	claims, err := s.verifier.Verify(hs.token)
	if err != nil {
		reason := token.Reason(err)
		if reason == "expired" {
			return s.refuse(reason, 401, "token_expired", "the token has expired; log in again")
		}
		return s.refuse(reason, 401, "unauthorized", "invalid token: "+tokenFault(reason))
	}
	hs.claims = claims
	if conns, _ := s.hub.Count(); conns+int(s.pending.Load())-1 >= s.cfg.MaxConns {
		return s.refuse("capacity", 503, "node_full", "this node is at its connection limit")
	}
	if !s.routes.admits(claims.UID) {
		return s.refuse("redis", 503, "unavailable", "cannot record routes right now; retry")
	}
	return nil
}

// tokenFault says what token.Reason's words mean, for the refusal's message.
func tokenFault(reason string) string {
	switch reason {
	case "unknown_key":
		return "signed with a key this node does not know (unknown kid: keys rotated, or another issuer)"
	case "bad_signature":
		return "the signature does not match its key id"
	case "wrong_audience":
		return "issued for another audience"
	case "not_yet_valid":
		return "not valid yet (clocks apart?)"
	case "malformed":
		return "not a well-formed JWT"
	case "bad_claims":
		return "its uid or device is not as Herald issues them"
	default:
		return "refused"
	}
}

func (s *server) refuse(reason string, status int, code, msg string) *refusal {
	s.metrics.refused.WithLabelValues(reason).Inc()
	return reject(status, code, msg)
}

func upgradeLabel(status int) string {
	if status == 0 {
		return "failed"
	}
	return strconv.Itoa(status)
}

// answer writes the response to an upgrade that was refused, and returns its status (0 when the
// connection failed before a request could be read, and nothing is written): a refusal of Herald's,
// or a JSON error for a request that is not a valid WebSocket upgrade.
func (s *server) answer(nc net.Conn, err error) int {
	nc.SetWriteDeadline(time.Now().Add(5 * time.Second))
	var ref *refusal
	var rej *ws.ConnectionRejectedError // gobwas's own refusals of what is not a valid upgrade
	switch {
	case errors.As(err, &ref):
	case errors.Is(err, ws.ErrHandshakeBadMethod):
		ref = reject(405, "method_not_allowed", "the WebSocket endpoint takes GET")
		ref.header = http.Header{"Allow": {"GET"}}
	case errors.Is(err, ws.ErrHandshakeBadSecVersion):
		ref = reject(426, "invalid_request", "WebSocket version 13 is required")
		ref.header = http.Header{"Sec-Websocket-Version": {"13"}}
	case errors.As(err, &rej):
		ref = reject(cmp.Or(rej.StatusCode(), 400), "invalid_request", "not a WebSocket upgrade: "+err.Error())
	default:
		return 0 // the client went away or timed out mid-request
	}
	body, _ := json.Marshal(ref.body)
	h := ref.header
	if h == nil {
		h = http.Header{}
	}
	h.Set("Content-Type", "application/json")
	writeResponse(nc, ref.status, h, body)
	return ref.status
}

// writeResponse writes a complete HTTP/1.1 response that closes the connection.
func writeResponse(w io.Writer, status int, header http.Header, body []byte) {
	resp := &http.Response{
		StatusCode: status, ProtoMajor: 1, ProtoMinor: 1, Header: header, Close: true,
		ContentLength: int64(len(body)), Body: io.NopCloser(bytes.NewReader(body)),
	}
	_ = resp.Write(w) // the client may be gone; nothing more to do
}

// open admits a connection of any transport: session table, route, then the welcome and reading.
// Writes that reach it before the welcome (a push right after the route is recorded) wait behind it.
// Last, it queues the replay of the user's pending messages, which follows the welcome, when the route
// directory's marker says there may be some. An error means c was closed without a welcome.
func (s *server) open(c *wsconn.Conn, hs handshakeState) error {
	c.ID = s.seq.Add(1)
	c.UID, c.Device, c.Binary = hs.claims.UID, hs.claims.Device, hs.binary
	c.ConnectedAt = time.Now().UnixMilli()
	if len(hs.claims.Rooms) > 0 {
		s.roomClaims.Store(c, hs.claims.Rooms)
	}
	var session string
	if c.Transport != wsconn.WebSocket {
		session = s.sessions.add(s.connID(c), c)
	}
	evicted := s.hub.Add(c)
	s.pending.Add(-1) // counted in the hub from now on, not twice while its route is recorded
	for _, old := range evicted {
		s.sendError(old, "", wire.CodeReplaced, "closed: this user opened too many connections")
		old.Close(wire.CloseReplaced, "replaced by a newer connection")
		s.metrics.closed.WithLabelValues("replaced").Inc()
		s.routes.unregister(s.routeOf(old))
	}
	pending, err := s.routes.register(s.routeOf(c))
	if err != nil {
		s.hub.Remove(c)
		s.sessions.remove(s.connID(c))
		s.metrics.upgrades.WithLabelValues("route_failed").Inc()
		c.Abort(wire.CloseTryAgainLater, "cannot record the route; reconnect")
		return err
	}
	if c.Transport == wsconn.Poll && c.Closed() {
		// Closed (kicked, drained, replaced) while its route was being recorded: a long-poll session's
		// OnClose has run already and removed a route that was not there yet.
		s.routes.unregister(s.routeOf(c))
		return wsconn.ErrClosed
	}
	welcome, _ := json.Marshal(wire.Welcome{Type: wire.TypeWelcome, ConnID: s.connID(c), Node: s.cfg.NodeID, UID: c.UID, HeartbeatS: s.cfg.HeartbeatS, Session: session})
	if err := c.Start(welcome); err != nil {
		s.logger.Debug("connection lost before its welcome", "err", err)
	}
	// Attach even a connection that failed just now: the engine's read of EOF is what releases it and
	// removes its route. A long-poll session has no socket to attach.
	if c.Transport != wsconn.Poll {
		if err := s.engine.Attach(c); err != nil {
			s.hub.Remove(c)
			s.sessions.remove(s.connID(c))
			s.routes.unregister(s.routeOf(c))
			c.Abort(wire.CloseInternal, "")
			s.logger.Error("attach connection", "err", err)
			return err
		}
	}
	if c.Transport == wsconn.WebSocket {
		s.metrics.upgrades.WithLabelValues("101").Inc()
	}
	s.metrics.opened.WithLabelValues(c.Transport.String()).Inc()
	if !pending {
		// Redis says nothing waits for this user: no call to push-route, no database query.
		s.metrics.replaysSkipped.Inc()
		return nil
	}
	s.replays.enqueue(c)
	return nil
}

func (s *server) routeOf(c *wsconn.Conn) routes.Route {
	return routes.Route{UID: c.UID, ConnID: s.connID(c), Node: s.cfg.NodeID, Device: c.Device, ConnectedAt: time.UnixMilli(c.ConnectedAt)}
}
