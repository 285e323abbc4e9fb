package routes

import (
	"context"
	"maps"
	"slices"
	"testing"
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
