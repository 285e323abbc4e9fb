package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/heraldpush/herald/pkg/routes"
	"github.com/heraldpush/herald/pkg/token"
	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/services/push-server/internal/wsconn"
)

// acceptWS accepts public connections until ln is closed. Each handshake gets a short-lived goroutine;
// once upgraded, the connection is handed to the engine and no goroutine remains.
func (s *server) acceptWS(ln net.Listener) {
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
		go s.handshake(nc)
	}
}

// handshakeState collects what the upgrade request says.
type handshakeState struct {
	token  string
	origin string
	binary bool
	claims token.Claims
}

func reject(status int, code, msg string) error {
	body, _ := json.Marshal(wire.ErrorBody{Error: wire.ErrorDetail{Code: code, Message: msg}})
	return ws.RejectConnectionError(
		ws.RejectionStatus(status),
		ws.RejectionReason(string(body)),
		ws.RejectionHeader(ws.HandshakeHeaderString("Content-Type: application/json\r\n")),
	)
}

func (s *server) handshake(nc net.Conn) {
	s.pending.Add(1)
	admitted := false
	defer func() {
		if !admitted {
			s.pending.Add(-1) // an admitted connection stops counting as pending in open
			nc.Close()
		}
	}()
	nc.SetDeadline(time.Now().Add(s.cfg.HandshakeTimeout))

	var hs handshakeState
	u := ws.Upgrader{
		OnRequest: func(uri []byte) error {
			path, query, _ := bytes.Cut(uri, []byte("?"))
			if string(path) != "/ws" {
				return reject(404, "not_found", "WebSocket endpoint is /ws")
			}
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
			return nil, s.admit(&hs)
		},
	}
	if _, err := u.Upgrade(nc); err != nil {
		s.metrics.upgrades.WithLabelValues(upgradeLabel(err)).Inc()
		s.logger.Debug("upgrade refused", "remote", nc.RemoteAddr().String(), "err", err)
		return
	}
	fd, err := detach(nc)
	if err != nil {
		s.logger.Error("detach upgraded connection", "err", err)
		return
	}
	admitted = true
	nc.Close() // the duplicate descriptor lives on; this frees the runtime's poller state
	s.open(fd, hs)
}

// admit decides, before answering the upgrade, whether this connection may open. Every refusal is
// counted by reason (herald_ws_refused_total) and its body says which check failed.
func (s *server) admit(hs *handshakeState) error {
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

func (s *server) refuse(reason string, status int, code, msg string) error {
	s.metrics.refused.WithLabelValues(reason).Inc()
	return reject(status, code, msg)
}

func upgradeLabel(err error) string {
	var rej *ws.ConnectionRejectedError
	if errors.As(err, &rej) {
		return fmt.Sprint(rej.StatusCode())
	}
	return "failed"
}

// detach returns a duplicate of nc's descriptor, so the connection can be served from epoll after nc
// (and the runtime's per-connection poller state) is released. The duplicate shares the original's
// non-blocking mode.
func detach(nc net.Conn) (int, error) {
	tc, ok := nc.(*net.TCPConn)
	if !ok {
		return -1, fmt.Errorf("not a TCP connection: %T", nc)
	}
	if err := tc.SetDeadline(time.Time{}); err != nil {
		return -1, err
	}
	raw, err := tc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd := -1
	var dupErr error
	if err := raw.Control(func(f uintptr) {
		fd, dupErr = unix.FcntlInt(f, unix.F_DUPFD_CLOEXEC, 0)
	}); err != nil {
		return -1, err
	}
	return fd, dupErr
}

// open admits an upgraded connection: session table, route, then the welcome and reading. Writes
// that reach it before the welcome (a push right after the route is recorded) wait behind it. Last,
// it queues the replay of the user's pending messages, which follows the welcome, when the route
// directory's marker says there may be some.
func (s *server) open(fd int, hs handshakeState) {
	c := wsconn.NewConn(fd, s.cfg.MaxQueue)
	c.ID = s.seq.Add(1)
	c.UID, c.Device, c.Binary = hs.claims.UID, hs.claims.Device, hs.binary
	c.ConnectedAt = time.Now().UnixMilli()
	evicted := s.hub.Add(c)
	s.pending.Add(-1) // counted in the hub from now on, not twice while its route is recorded
	for _, old := range evicted {
		s.sendError(old, "", wire.CodeReplaced, "closed: this user opened too many connections")
		old.Close(wire.CloseReplaced, "replaced by a newer connection")
		s.metrics.closed.WithLabelValues("replaced").Inc()
		s.routes.unregister(s.route(old))
	}
	pending, err := s.routes.register(s.route(c))
	if err != nil {
		s.hub.Remove(c)
		s.metrics.upgrades.WithLabelValues("route_failed").Inc()
		c.Abort(wire.CloseTryAgainLater, "cannot record the route; reconnect")
		return
	}
	welcome, _ := json.Marshal(wire.Welcome{Type: wire.TypeWelcome, ConnID: s.connID(c), Node: s.cfg.NodeID, UID: c.UID, HeartbeatS: s.cfg.HeartbeatS})
	if err := c.Start(welcome); err != nil {
		s.logger.Debug("connection lost before its welcome", "err", err)
	}
	// Attach even a connection that failed just now: the engine's read of EOF is what releases it and
	// removes its route.
	if err := s.engine.Attach(c); err != nil {
		s.hub.Remove(c)
		s.routes.unregister(s.route(c))
		c.Abort(wire.CloseInternal, "")
		s.logger.Error("attach connection", "err", err)
		return
	}
	s.metrics.upgrades.WithLabelValues("101").Inc()
	if !pending {
		// Redis says nothing waits for this user: no call to push-route, no database query.
		s.metrics.replaysSkipped.Inc()
		return
	}
	s.replays.enqueue(c)
}

func (s *server) route(c *wsconn.Conn) routes.Route {
	return routes.Route{UID: c.UID, ConnID: s.connID(c), Node: s.cfg.NodeID, Device: c.Device, ConnectedAt: time.UnixMilli(c.ConnectedAt)}
}
