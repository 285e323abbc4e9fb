package routes

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldpush/herald/pkg/wire"
)

// The room registry: for each room, how many members each node holds (herald:room:{<room>}, node id →
// count), and for each node the rooms it has members in (its room index, for sweeping a dead node).
// A push-server writes its own entries as members join and leave; push-route reads a room's entry to
// call only the nodes that have members, and sweeps a dead node's.

var roomSetScript = loadScript("room_set.lua")

// roomKey names a room's registry hash. The room is the hash tag: each room's entry is one slot.
func roomKey(room string) string {
	return keyPrefix + "room:{" + room + "}"
}

// nodeRoomsKey names the set of rooms a node has members in. It shares the node's hash tag with its
// synced mark.
func nodeRoomsKey(node string) string {
	return keyPrefix + "node:{" + node + "}:rooms"
}

// SetRoomCounts records node's member count of each room in counts (0: none left) in one round trip,
// and keeps node's room index to match.
func (s *Store) SetRoomCounts(ctx context.Context, node string, counts map[string]int) error {
	if err := validNode(node); err != nil {
		return fmt.Errorf("set room counts: %w", err)
	}
	if len(counts) == 0 {
		return nil
	}
	calls := make([]scriptCall, 0, len(counts))
	var add, remove []any
	for room, n := range counts {
		calls = append(calls, scriptCall{script: roomSetScript, keys: []string{roomKey(room)}, args: []any{node, n}})
		if n > 0 {
			add = append(add, room)
		} else {
			remove = append(remove, room)
		}
	}
	// The index gains a room before its entry is written and loses it after, in the same pipeline:
	// a sweep never misses an entry the node wrote.
	err := s.runPipelined(ctx, calls, func(p redis.Pipeliner) {
		if len(add) > 0 {
			p.SAdd(ctx, nodeRoomsKey(node), add...)
		}
		if len(remove) > 0 {
			p.SRem(ctx, nodeRoomsKey(node), remove...)
		}
	})
	if err != nil {
		return fmt.Errorf("set room counts: %w", err)
	}
	return nil
}

// RoomNodes returns the nodes that hold members of room, with their member counts.
func (s *Store) RoomNodes(ctx context.Context, room string) (map[string]int, error) {
	all, err := s.rdb.HGetAll(ctx, roomKey(room)).Result()
	s.failed(err)
	if err != nil {
		return nil, fmt.Errorf("room nodes: %w", err)
	}
	out := make(map[string]int, len(all))
	for node, v := range all {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			out[node] = n
		}
	}
	return out, nil
}

// NodeRooms returns the rooms node has recorded members in.
func (s *Store) NodeRooms(ctx context.Context, node string) ([]string, error) {
	rooms, err := s.rdb.SMembers(ctx, nodeRoomsKey(node)).Result()
	s.failed(err)
	if err != nil {
		return nil, fmt.Errorf("node rooms: %w", err)
	}
	return rooms, nil
}

// SweepNodeRooms removes node's entries from every room it recorded members in, then its room index,
// for when node has died (or a new process of it starts). It returns how many rooms it touched.
func (s *Store) SweepNodeRooms(ctx context.Context, node string) (int, error) {
	rooms, err := s.NodeRooms(ctx, node)
	if err != nil {
		return 0, fmt.Errorf("sweep node rooms: %w", err)
	}
	counts := make(map[string]int, len(rooms))
	for _, r := range rooms {
		counts[r] = 0
	}
	if err := s.SetRoomCounts(ctx, node, counts); err != nil {
		return 0, fmt.Errorf("sweep node rooms: %w", err)
	}
	return len(rooms), nil
}

var (
	roomHistoryAdd   = loadScript("room_history_add.lua")
	roomHistorySince = loadScript("room_history_since.lua")
)

// roomHistoryKey names a room's history stream; it shares the room hash's slot.
func roomHistoryKey(room string) string {
	return keyPrefix + "room:{" + room + "}:history"
}

// AppendRoomHistory keeps m in room's history of the last keep messages, which lives ttl after its
// last message.
func (s *Store) AppendRoomHistory(ctx context.Context, room string, m wire.Message, keep int, ttl time.Duration) error {
	if keep <= 0 || ttl <= 0 {
		return fmt.Errorf("append room history: %w: keep %d, ttl %v", ErrInvalid, keep, ttl)
	}
	if err := s.run(ctx, roomHistoryAdd, []string{roomHistoryKey(room)}, m.ID, string(m.Data), m.TS, keep, ttl.Milliseconds()).Err(); err != nil {
		return fmt.Errorf("append room history: %w", err)
	}
	return nil
}

// RoomHistorySince returns the messages of room's history after the one with id since, oldest first;
// found is false when the history does not hold since (too old, or no history).
func (s *Store) RoomHistorySince(ctx context.Context, room, since string) (msgs []wire.Message, found bool, err error) {
	vals, err := s.run(ctx, roomHistorySince, []string{roomHistoryKey(room)}, since).Slice()
	if err != nil {
		return nil, false, fmt.Errorf("room history: %w", err)
	}
	if len(vals) == 0 || vals[0] != int64(1) {
		return nil, false, nil
	}
	for i := 1; i+2 < len(vals); i += 3 {
		id, _ := vals[i].(string)
		data, _ := vals[i+1].(string)
		tsText, _ := vals[i+2].(string)
		ts, _ := strconv.ParseInt(tsText, 10, 64)
		msgs = append(msgs, wire.Message{ID: id, Data: json.RawMessage(data), TS: ts})
	}
	return msgs, true, nil
}
