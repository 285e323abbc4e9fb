package main

import (
	"context"
	"time"

	"github.com/heraldpush/herald/pkg/routes"
	"github.com/heraldpush/herald/pkg/wire"
)

// How the node keeps its entries in the Redis room registry (routes.SetRoomCounts) right: once a
// room's member count changes, the changes of the next roomSyncEvery are written together, one round
// trip for all of them, so a burst of joins costs Redis a handful of writes; every roomResyncEvery,
// and soon after a write failed or the routes had to be recorded again (Redis came back, maybe
// empty), all of them are written and entries of rooms the node no longer has members in are removed.
// While nothing changes the writer sleeps: a fixed 100 ms ticker woke an idle node ten times a second.
const (
	roomSyncEvery   = 100 * time.Millisecond
	roomResyncEvery = 30 * time.Second
)

// roomRegistry is the part of the route directory the node's room entries live in.
type roomRegistry interface {
	SetRoomCounts(ctx context.Context, node string, counts map[string]int) error
	NodeRooms(ctx context.Context, node string) ([]string, error)
	// RoomHistorySince is what a room's history (kept by push-route) holds after a message.
	RoomHistorySince(ctx context.Context, room, since string) ([]wire.Message, bool, error)
}

var _ roomRegistry = (*routes.Store)(nil)

// roomsLost asks the room sync for a full resync at its next turn: Redis lost the node's entries, or
// may have (it came back, maybe empty; a replica took over).
func (s *server) roomsLost() {
	s.roomsStale.Store(true)
	select {
	case s.roomsDue <- struct{}{}:
	default:
	}
}

func (s *server) syncRooms(ctx context.Context) {
	resync := time.NewTicker(roomResyncEvery)
	defer resync.Stop()
	gather := time.NewTimer(roomSyncEvery)
	gather.Stop()
	for {
		select {
		case <-ctx.Done():
			s.flushRooms()
			return
		case <-resync.C:
			s.resyncRooms(ctx)
			continue
		case <-s.rooms.Changes():
		case <-s.roomsDue:
		}
		gather.Reset(roomSyncEvery)
		select {
		case <-ctx.Done():
			s.flushRooms()
			return
		case <-gather.C:
		}
		if s.roomsStale.Swap(false) {
			s.resyncRooms(ctx)
			continue
		}
		s.writeRooms(ctx, s.rooms.Changed())
	}
}

// flushRooms writes the last changes (a drain's leaves) as the node stops.
func (s *server) flushRooms() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s.writeRooms(ctx, s.rooms.Changed())
}

func (s *server) writeRooms(ctx context.Context, counts map[string]int) {
	if len(counts) == 0 {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := s.roomRegistry.SetRoomCounts(ctx, s.cfg.NodeID, counts); err != nil {
		s.rooms.Retry(counts)
		s.roomsLost() // what else went missing is not known: all of it is written again
		s.metrics.routeErrors.WithLabelValues("rooms").Inc()
		s.logger.Warn("room registry not updated; retrying", "rooms", len(counts), "err", err)
	}
}

// resyncRooms writes every room's count, and 0 for the rooms the registry still lists for this node
// that have no member here.
func (s *server) resyncRooms(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	listed, err := s.roomRegistry.NodeRooms(ctx, s.cfg.NodeID)
	if err != nil {
		s.metrics.routeErrors.WithLabelValues("rooms").Inc()
		s.roomsLost()
		return
	}
	s.rooms.Changed() // all of them are written now
	counts := s.rooms.Counts()
	for _, r := range listed {
		if _, ok := counts[r]; !ok {
			counts[r] = 0
		}
	}
	s.writeRooms(ctx, counts)
}
