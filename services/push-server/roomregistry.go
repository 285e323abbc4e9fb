package main

import (
	"context"
	"time"

	"github.com/heraldpush/herald/pkg/routes"
	"github.com/heraldpush/herald/pkg/wire"
)

// How the node keeps its entries in the Redis room registry (routes.SetRoomCounts) right: the rooms
// whose member count changed are written every roomSyncEvery, one round trip for all of them, so a
// burst of joins costs Redis a handful of writes; every roomResyncEvery, and at the next turn after a
// write failed or the routes had to be recorded again (Redis came back, maybe empty), all of them are
// written and entries of rooms the node no longer has members in are removed.
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
func (s *server) roomsLost() { s.roomsStale.Store(true) }

func (s *server) syncRooms(ctx context.Context) {
	sync := time.NewTicker(roomSyncEvery)
	defer sync.Stop()
	resync := time.NewTicker(roomResyncEvery)
	defer resync.Stop()
	for {
		select {
		case <-ctx.Done():
			// The last changes (a drain's leaves) still go out.
			flushCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			s.writeRooms(flushCtx, s.rooms.Changed())
			cancel()
			return
		case <-sync.C:
			if s.roomsStale.Swap(false) {
				s.resyncRooms(ctx)
				continue
			}
			s.writeRooms(ctx, s.rooms.Changed())
		case <-resync.C:
			s.resyncRooms(ctx)
		}
	}
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
