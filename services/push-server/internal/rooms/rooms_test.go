package rooms

import (
	"context"
	"encoding/json"
	"errors"
	"maps"
	"slices"
	"testing"
	"time"

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
	hold.Release(nil, func(ms []wire.Message) {
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

// takeIDs reads the room frames queued for a poll connection and returns their messages' ids in
// order.
func takeIDs(t *testing.T, c *wsconn.Conn, wantFrames int) []string {
	t.Helper()
	var ids []string
	frames := 0
	deadline := time.Now().Add(5 * time.Second)
	for frames < wantFrames {
		if time.Now().After(deadline) {
			t.Fatalf("got %d frames (%v), want %d", frames, ids, wantFrames)
		}
		payloads, _ := c.Take(context.Background(), 100*time.Millisecond)
		for _, p := range payloads {
			var f wire.RoomFrame
			if err := json.Unmarshal(p, &f); err != nil {
				t.Fatalf("frame %s: %v", p, err)
			}
			frames++
			for _, it := range f.Items {
				ids = append(ids, it.ID)
			}
		}
	}
	return ids
}

// TestReplayedMessagesAreNotSentTwice: a message published while a member recovers is appended to
// the history before it reaches the node, so it can be replayed from the history and then arrive
// live after the hold was released. The member gets it once.
func TestReplayedMessagesAreNotSentTwice(t *testing.T) {
	tb := New(0)
	late := conn(1)
	hold, _, err := tb.JoinHeld(late, "chat")
	if err != nil || hold == nil {
		t.Fatalf("JoinHeld: %v %v", hold, err)
	}
	sent := make(chan int, 4)
	f := NewFanout(tb, 0, func(n, writes int) { sent <- n })
	f.Publish("chat", wire.Message{ID: "m1", Data: []byte(`1`)}) // held, and in the history too
	<-sent
	missed := []wire.Message{{ID: "m0", Data: []byte(`0`)}, {ID: "m1", Data: []byte(`1`)}, {ID: "m2", Data: []byte(`2`)}}
	hold.Release(missed, func(items []wire.Message) {
		late.WriteFrame(Frame("chat", items))
	})
	if got := takeIDs(t, late, 1); !slices.Equal(got, []string{"m0", "m1", "m2"}) {
		t.Fatalf("released %v, want m0 m1 m2", got)
	}
	// m2 was read from the history and arrives live only now, beside a new message.
	f.Publish("chat", wire.Message{ID: "m2", Data: []byte(`2`)})
	<-sent
	f.Publish("chat", wire.Message{ID: "m3", Data: []byte(`3`)})
	<-sent
	if got := takeIDs(t, late, 1); !slices.Equal(got, []string{"m3"}) {
		t.Fatalf("after the release %v, want only m3", got)
	}
}
