package main

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/heraldpush/herald/pkg/ident"
	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/services/push-server/internal/wsconn"
)

func (s *server) connID(c *wsconn.Conn) string {
	return s.cfg.NodeID + ":" + strconv.FormatUint(c.ID, 36)
}

// OnMessage handles one frame from a device (wsconn.Handler).
func (s *server) OnMessage(c *wsconn.Conn, payload []byte) {
	s.metrics.framesIn.Inc()
	if !c.Rate.Allow(time.Now().UnixNano(), float32(s.cfg.MsgRate), float32(s.cfg.MsgBurst)) {
		s.metrics.rateLimited.Inc()
		if int(c.Rate.Strikes) > s.cfg.RateStrikes {
			c.Close(wire.ClosePolicy, "message rate exceeded")
			return
		}
		s.sendError(c, "", wire.CodeRateLimited, "too many messages; slow down")
		return
	}
	var in wire.Inbound
	if err := json.Unmarshal(payload, &in); err != nil {
		s.sendError(c, "", wire.CodeMalformed, "a frame must be a JSON object with a string \"type\"")
		return
	}
	switch in.Type {
	case wire.TypePing:
		c.WriteFrame(s.pong)
	case wire.TypeAck:
		if in.ID == "" || len(in.ID) > ident.MaxLen { // no message id is longer
			s.sendError(c, "", wire.CodeBadRequest, "ack needs the id of the push it acknowledges")
			return
		}
		s.metrics.acks.Inc()
		s.acks.add(wire.Ack{UID: c.UID, ID: in.ID})
	case wire.TypeUp:
		s.handleUp(c, in)
	case wire.TypeJoin:
		s.handleJoin(c, in)
	case wire.TypeLeave:
		s.handleLeave(c, in)
	case "":
		s.sendError(c, "", wire.CodeMalformed, "a frame must be a JSON object with a string \"type\"")
	default:
		s.sendError(c, "", wire.CodeUnknownType, "unknown frame type "+strconv.Quote(in.Type))
	}
}

func (s *server) sendError(c *wsconn.Conn, ref, code, msg string) {
	b, _ := json.Marshal(wire.Error{Type: wire.TypeError, Ref: ref, Code: code, Message: msg})
	c.WriteFrame(b)
}

// OnClose forgets a closed connection (wsconn.Handler).
func (s *server) OnClose(c *wsconn.Conn, code int, reason string) {
	switch c.Transport {
	case wsconn.SSE:
		s.sessions.remove(s.connID(c))
	case wsconn.Poll:
		// What it was sent last (a reconnect, the close frame) waits for the client's next poll, which
		// may be on its way; that poll forgets the session, or this timer does.
		id := s.connID(c)
		time.AfterFunc(time.Duration(s.cfg.HeartbeatS)*time.Second, func() { s.sessions.remove(id) })
	}
	s.rooms.LeaveAll(c)
	s.roomClaims.Delete(c)
	removed, _ := s.hub.Remove(c)
	if !removed {
		return // evicted or never fully admitted: whoever removed it cleaned up
	}
	s.metrics.closed.WithLabelValues(closeLabel(code)).Inc()
	s.routes.unregister(s.routeOf(c))
}

func closeLabel(code int) string {
	if code == 0 {
		return "peer"
	}
	return strconv.Itoa(code)
}

// sweepIdle closes connections silent for three heartbeats (a long-poll session: not polled, nor sent
// to), once per heartbeat: one coarse pass per shard instead of a timer per connection. It is also
// the SSE streams' heartbeat.
func (s *server) sweepIdle(stop <-chan struct{}) {
	every := time.Duration(s.cfg.HeartbeatS) * time.Second
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			limit := now.Add(-3 * every).Unix()
			s.hub.Each(2, func(c *wsconn.Conn) {
				if c.Transport == wsconn.SSE {
					// An open stream is alive until a write fails; its client pings by /send only if it likes.
					c.Heartbeat()
					return
				}
				if c.LastSeen() < limit && !c.Waiting() {
					s.metrics.idleClosed.Inc()
					c.Close(wire.ClosePolicy, "idle timeout")
				}
			})
		}
	}
}
