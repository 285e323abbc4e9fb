package routes

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/wire"
)

// TestRoomRegistry: nodes record their member counts, a room's entry names only nodes with members,
// and a sweep removes a node's entries from every room without touching the others'.
func TestRoomRegistry(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	if err := s.SetRoomCounts(ctx, "reg-ps-1", map[string]int{"reg:lobby": 3, "reg:doc": 1}); err != nil {
		t.Fatal(err)
	}
	if err := s.SetRoomCounts(ctx, "reg-ps-2", map[string]int{"reg:lobby": 5}); err != nil {
		t.Fatal(err)
	}
	got, err := s.RoomNodes(ctx, "reg:lobby")
	if err != nil || !maps.Equal(got, map[string]int{"reg-ps-1": 3, "reg-ps-2": 5}) {
		t.Fatalf("lobby: %v, %v", got, err)
	}
	// ps-1's last member of the doc leaves: the room has no node left.
	if err := s.SetRoomCounts(ctx, "reg-ps-1", map[string]int{"reg:doc": 0}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.RoomNodes(ctx, "reg:doc"); len(got) != 0 {
		t.Fatalf("doc after its last member left: %v", got)
	}
	if rooms, _ := s.NodeRooms(ctx, "reg-ps-1"); !slices.Equal(rooms, []string{"reg:lobby"}) {
		t.Fatalf("ps-1's index %v", rooms)
	}
	// ps-2 dies and is swept.
	if n, err := s.SweepNodeRooms(ctx, "reg-ps-2"); err != nil || n != 1 {
		t.Fatalf("sweep: %d, %v", n, err)
	}
	if got, _ := s.RoomNodes(ctx, "reg:lobby"); !maps.Equal(got, map[string]int{"reg-ps-1": 3}) {
		t.Fatalf("lobby after the sweep: %v", got)
	}
	if rooms, _ := s.NodeRooms(ctx, "reg-ps-2"); len(rooms) != 0 {
		t.Fatalf("swept node's index %v", rooms)
	}
}

// TestRoomHistory: the history keeps the last N messages; what came after a message it still holds is
// returned in order, and a message it no longer holds says so.
func TestRoomHistory(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	for i := range 5 {
		m := wire.Message{ID: fmt.Sprintf("h%d", i), Data: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)), TS: int64(1000 + i)}
		if err := s.AppendRoomHistory(ctx, "hist:room", m, 3, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	msgs, found, err := s.RoomHistorySince(ctx, "hist:room", "h2")
	if err != nil || !found || len(msgs) != 2 || msgs[0].ID != "h3" || msgs[1].ID != "h4" || string(msgs[1].Data) != `{"n":4}` || msgs[1].TS != 1004 {
		t.Fatalf("since h2: %+v %v %v", msgs, found, err)
	}
	if msgs, found, _ := s.RoomHistorySince(ctx, "hist:room", "h4"); !found || len(msgs) != 0 {
		t.Fatalf("since the last: %+v %v", msgs, found)
	}
	if _, found, _ := s.RoomHistorySince(ctx, "hist:room", "h1"); found {
		t.Fatal("h1 is beyond the history's 3 messages, but was found")
	}
	if _, found, err := s.RoomHistorySince(ctx, "hist:none", "x"); found || err != nil {
		t.Fatalf("no history: %v %v", found, err)
	}
}
