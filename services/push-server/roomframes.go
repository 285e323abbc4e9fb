package main

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

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
	if in.Since != "" {
		if len(in.Since) > ident.MaxLen { // no message id is longer
			s.sendError(c, in.Ref, wire.CodeBadRequest, "since: a message id of at most 128 characters")
			return
		}
		s.joinRecovering(c, in)
		return
	}
	first, err := s.rooms.Join(c, in.Room)
	if errors.Is(err, rooms.ErrTooMany) {
		s.refuseRoom(c, in.Ref, wire.CodeTooMany, "in -max-rooms-per-conn rooms already; leave one first")
		return
	}
	s.metrics.roomJoins.WithLabelValues("joined").Inc()
	b, _ := json.Marshal(wire.RoomAnswer{Type: wire.TypeJoined, Room: in.Room, Ref: in.Ref})
	if !first {
		c.WriteFrame(b)
		return
	}
	// The room's first member here: joined means "you get what is published from now on", so the
	// registry must name this node before the answer (off the engine's workers).
	go func() {
		s.registerRoom(in.Room)
		c.WriteFrame(b)
	}()
}

// registerRoom writes the node's entry of a room that just got its first member here, so push-route
// calls this node for the room's messages from now on. A failure is retried by the periodic sync; the
// member may miss what is published until then.
func (s *server) registerRoom(room string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := s.roomRegistry.SetRoomCounts(ctx, s.cfg.NodeID, map[string]int{room: max(s.rooms.Len(room), 1)}); err != nil {
		s.metrics.routeErrors.WithLabelValues("rooms").Inc()
		s.logger.Warn("room registry not updated at the first join; retrying", "room", room, "err", err)
	}
}

// joinRecovering joins c to a room it was in before, first sending what it missed since in.Since from
// the room's history, then joined with recovered true, or false when the history does not reach back
// that far (what it holds is not sent then either: the client cannot tell what is missing). The room's
// new messages wait meanwhile and follow, without those already replayed. The history is read off the
// engine's workers.
func (s *server) joinRecovering(c *wsconn.Conn, in wire.Inbound) {
	hold, first, err := s.rooms.JoinHeld(c, in.Room)
	switch {
	case errors.Is(err, rooms.ErrTooMany):
		s.refuseRoom(c, in.Ref, wire.CodeTooMany, "in -max-rooms-per-conn rooms already; leave one first")
		return
	case hold == nil:
		// In the room already: it has missed nothing since it joined, but cannot tell about before.
		recovered := false
		b, _ := json.Marshal(wire.RoomAnswer{Type: wire.TypeJoined, Room: in.Room, Ref: in.Ref, Recovered: &recovered})
		c.WriteFrame(b)
		return
	}
	s.metrics.roomJoins.WithLabelValues("joined").Inc()
	go func() {
		if first {
			// Before the history is read: every message is then either in what it holds, or was sent
			// to this node after the registry named it (and is held meanwhile).
			s.registerRoom(in.Room)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		missed, found, err := s.roomRegistry.RoomHistorySince(ctx, in.Room, in.Since)
		if err != nil {
			s.logger.Warn("room history unavailable; joined without recovery", "room", in.Room, "err", err)
		}
		recovered := err == nil && found
		if !recovered {
			missed = nil
		}
		s.metrics.roomRecoveries.WithLabelValues(strconv.FormatBool(recovered)).Inc()
		hold.Release(missed, func(items []wire.Message) {
			if len(items) > 0 {
				c.WriteFrame(rooms.Frame(in.Room, items))
			}
			b, _ := json.Marshal(wire.RoomAnswer{Type: wire.TypeJoined, Room: in.Room, Ref: in.Ref, Recovered: &recovered})
			c.WriteFrame(b)
		})
	}()
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
	var changed []*wsconn.Conn
	register := false
	for _, uid := range uids {
		for _, c := range s.hub.Conns(uid) {
			if join {
				first, err := s.rooms.Join(c, room)
				if err != nil {
					continue
				}
				register = register || first
			} else if !s.rooms.Leave(c, room) {
				continue
			}
			changed = append(changed, c)
		}
	}
	if register {
		s.registerRoom(room) // as for a device's join: the answer promises what is published from now on
	}
	for _, c := range changed {
		c.WriteFrame(b)
	}
	return len(changed)
}
