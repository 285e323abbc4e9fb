package main

import (
	"encoding/json"
	"errors"

	"github.com/heraldpush/herald/pkg/ident"
	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/services/push-server/internal/rooms"
	"github.com/heraldpush/herald/services/push-server/internal/wsconn"
)

// handleJoin puts c into a room its token allows (or any room under -room-policy open) and answers
// joined, or an error frame with the join's ref.
func (s *server) handleJoin(c *wsconn.Conn, in wire.Inbound) {
	if err := ident.Check("room", in.Room); err != nil {
		s.refuseRoom(c, in.Ref, wire.CodeInvalidRoom, "join: "+err.Error())
		return
	}
	if s.cfg.RoomPolicy != "open" {
		claim, _ := s.roomClaims.Load(c)
		patterns, _ := claim.([]string)
		if !ident.RoomAllowed(patterns, in.Room) {
			s.refuseRoom(c, in.Ref, wire.CodeForbidden, "this token may not join "+in.Room+" (its rooms claim)")
			return
		}
	}
	if err := s.rooms.Join(c, in.Room); errors.Is(err, rooms.ErrTooMany) {
		s.refuseRoom(c, in.Ref, wire.CodeTooMany, "in -max-rooms-per-conn rooms already; leave one first")
		return
	}
	s.metrics.roomJoins.WithLabelValues("joined").Inc()
	answer := wire.RoomAnswer{Type: wire.TypeJoined, Room: in.Room, Ref: in.Ref}
	if in.Since != "" {
		recovered := false // no history is kept here: nothing missed can be replayed
		answer.Recovered = &recovered
	}
	b, _ := json.Marshal(answer)
	c.WriteFrame(b)
}

// handleLeave takes c out of a room and answers left (also when it was not in it).
func (s *server) handleLeave(c *wsconn.Conn, in wire.Inbound) {
	if err := ident.Check("room", in.Room); err != nil {
		s.refuseRoom(c, in.Ref, wire.CodeInvalidRoom, "leave: "+err.Error())
		return
	}
	if s.rooms.Leave(c, in.Room) {
		s.metrics.roomJoins.WithLabelValues("left").Inc()
	}
	b, _ := json.Marshal(wire.RoomAnswer{Type: wire.TypeLeft, Room: in.Room, Ref: in.Ref})
	c.WriteFrame(b)
}

func (s *server) refuseRoom(c *wsconn.Conn, ref, code, msg string) {
	s.metrics.roomJoins.WithLabelValues(code).Inc()
	s.sendError(c, ref, code, msg)
}

// joinUsers puts every local connection of uids into room, server-side (push-route's room API, which
// the business system's API key authorizes: no rooms claim is needed), and tells each device so.
func (s *server) joinUsers(room string, uids []string, join bool) int {
	typ := wire.TypeJoined
	if !join {
		typ = wire.TypeLeft
	}
	b, _ := json.Marshal(wire.RoomAnswer{Type: typ, Room: room})
	n := 0
	for _, uid := range uids {
		for _, c := range s.hub.Conns(uid) {
			switch {
			case join && s.rooms.Join(c, room) == nil:
			case !join && s.rooms.Leave(c, room):
			default:
				continue
			}
			n++
			c.WriteFrame(b)
		}
	}
	return n
}
