package rooms

import (
	"errors"
	"maps"
	"testing"

	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/services/push-server/internal/wsconn"
)

// conn is a connection for the table: only its identity matters here.
func conn(id uint64) *wsconn.Conn {
	c := wsconn.NewPollConn(1<<10, func(*wsconn.Conn, int, string) {})
	c.ID = id
	return c
}

func TestJoinLeaveAndLimits(t *testing.T) {
	tb := New(2)
	a, b := conn(1), conn(2)
	if first, err := tb.Join(a, "lobby"); err != nil || !first {
		t.Fatalf("first join: %v %v", first, err)
	}
	if first, _ := tb.Join(b, "lobby"); first {
		t.Fatal("the second member reported as the first")
	}
	if first, err := tb.Join(a, "lobby"); err != nil || first {
		t.Fatalf("joining again: %v %v, want a no-op", first, err)
	}
	tb.Join(a, "doc")
	if _, err := tb.Join(a, "third"); !errors.Is(err, ErrTooMany) {
		t.Fatalf("third room: %v, want ErrTooMany", err)
	}
	if tb.Len("lobby") != 2 || tb.Len("doc") != 1 {
		t.Fatalf("lobby %d, doc %d", tb.Len("lobby"), tb.Len("doc"))
	}
	if changed := tb.Changed(); !maps.Equal(changed, map[string]int{"lobby": 2, "doc": 1}) {
		t.Fatalf("changed %v", changed)
	}
	if !tb.Leave(b, "lobby") || tb.Leave(b, "lobby") {
		t.Fatal("leave: want true, then false")
	}
	if left := tb.LeaveAll(a); len(left) != 2 {
		t.Fatalf("LeaveAll %v", left)
	}
	if changed := tb.Changed(); !maps.Equal(changed, map[string]int{"lobby": 0, "doc": 0}) {
		t.Fatalf("changed after leaving %v", changed)
	}
	if top, rooms, members := tb.Largest(5); len(top) != 0 || rooms != 0 || members != 0 {
		t.Fatalf("an empty table: %v %d %d", top, rooms, members)
	}
}

// TestHoldKeepsFramesUntilRelease: a member joining with a hold gets nothing until Release, which sees
// what was held and lets what follows through after it.
func TestHoldKeepsFramesUntilRelease(t *testing.T) {
	tb := New(0)
	live, late := conn(1), conn(2)
	tb.Join(live, "chat")
	hold, first, err := tb.JoinHeld(late, "chat")
	if err != nil || hold == nil || first {
		t.Fatalf("JoinHeld: %v %v %v", hold, first, err)
	}
	sent := make(chan int, 2)
	f := NewFanout(tb, 0, func(n, writes int) { sent <- n })
	f.Publish("chat", wire.Message{ID: "m1", Data: []byte(`1`)})
	f.Publish("chat", wire.Message{ID: "m2", Data: []byte(`2`)})
	frames := <-sent + <-sent // a frame each, sent off the caller
	var held []string
	hold.Release(func(ms []wire.Message) {
		for _, m := range ms {
			held = append(held, m.ID)
		}
	})
	if len(held) != 2 || held[0] != "m1" || held[1] != "m2" || frames != 2 {
		t.Fatalf("held %v, frames %d", held, frames)
	}
	if again, _, _ := tb.JoinHeld(late, "chat"); again != nil {
		t.Fatal("a member joining again got a hold")
	}
}
