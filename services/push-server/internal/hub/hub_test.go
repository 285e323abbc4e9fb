package hub

import (
	"fmt"
	"sync"
	"testing"

	"github.com/heraldpush/herald/services/push-server/internal/wsconn"
)

func conn(uid string, id uint64) *wsconn.Conn {
	c := wsconn.NewConn(-1, 0)
	c.UID, c.ID = uid, id
	return c
}

func TestAddRemove(t *testing.T) {
	h := New(0)
	a1, a2, b1 := conn("a", 1), conn("a", 2), conn("b", 3)
	for _, c := range []*wsconn.Conn{a1, a2, b1} {
		if ev := h.Add(c); len(ev) != 0 {
			t.Fatalf("evicted %v with no limit", ev)
		}
	}
	if c, u := h.Count(); c != 3 || u != 2 {
		t.Fatalf("count %d conns %d users, want 3 and 2", c, u)
	}
	if got := h.Conns("a"); len(got) != 2 || got[0] != a1 || got[1] != a2 {
		t.Fatalf("Conns(a) = %v", got)
	}
	held := h.Conns("a")
	if removed, last := h.Remove(a1); !removed || last {
		t.Fatalf("Remove(a1) = %v %v, want true false", removed, last)
	}
	if len(held) != 2 || held[0] != a1 {
		t.Fatal("Remove changed a slice a reader held")
	}
	if removed, last := h.Remove(a2); !removed || !last {
		t.Fatalf("Remove(a2) = %v %v, want true true", removed, last)
	}
	if removed, _ := h.Remove(a2); removed {
		t.Fatal("second Remove reported a removal")
	}
	if h.Has("a") || !h.Has("b") {
		t.Fatal("Has wrong after removals")
	}
	if c, u := h.Count(); c != 1 || u != 1 {
		t.Fatalf("count %d/%d, want 1/1", c, u)
	}
}

func TestPerUserLimitEvictsOldest(t *testing.T) {
	h := New(2)
	c1, c2, c3 := conn("u", 1), conn("u", 2), conn("u", 3)
	h.Add(c1)
	h.Add(c2)
	ev := h.Add(c3)
	if len(ev) != 1 || ev[0] != c1 {
		t.Fatalf("evicted %v, want the oldest", ev)
	}
	if got := h.Conns("u"); len(got) != 2 || got[0] != c2 || got[1] != c3 {
		t.Fatalf("left %v", got)
	}
	if c, u := h.Count(); c != 2 || u != 1 {
		t.Fatalf("count %d/%d", c, u)
	}
	if removed, _ := h.Remove(c1); removed {
		t.Fatal("an evicted connection was still in the hub")
	}
}

func TestEachVisitsEveryConnectionOnce(t *testing.T) {
	h := New(0)
	for i := range 1000 {
		h.Add(conn(fmt.Sprint("user-", i%300), uint64(i)))
	}
	var mu sync.Mutex
	seen := map[uint64]int{}
	n := h.Each(4, func(c *wsconn.Conn) {
		mu.Lock()
		seen[c.ID]++
		mu.Unlock()
	})
	if n != 1000 || len(seen) != 1000 {
		t.Fatalf("visited %d, distinct %d, want 1000", n, len(seen))
	}
	for id, k := range seen {
		if k != 1 {
			t.Fatalf("conn %d visited %d times", id, k)
		}
	}
}

func TestConcurrentUse(t *testing.T) {
	h := New(3)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				c := conn(fmt.Sprint("u", i%50), uint64(g*1000+i))
				h.Add(c)
				h.Conns(c.UID)
				h.Remove(c)
			}
		})
	}
	wg.Go(func() {
		for range 20 {
			h.Each(2, func(*wsconn.Conn) {})
		}
	})
	wg.Wait()
	if c, u := h.Count(); c != 0 || u != 0 {
		t.Fatalf("count %d/%d after everything was removed", c, u)
	}
}
