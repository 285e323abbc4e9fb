package main

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// markerValue is uid's pending marker in Redis, "" when there is none.
func markerValue(t testing.TB, uid string) string {
	t.Helper()
	v, err := redisClient(t).Get(context.Background(), "herald:pending:{"+uid+"}").Result()
	if errors.Is(err, redis.Nil) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestPendingMarkerSetAndCleared follows one user's marker: none before anything is stored, set by a
// stored message, kept while the message is pending, cleared by the first connect that finds nothing.
func TestPendingMarkerSetAndCleared(t *testing.T) {
	user := uniq("marker")
	push(t, map[string]any{"uids": []string{user}, "data": "live only"})
	if v := markerValue(t, user); v != "" {
		t.Fatalf("a message without ttl set the marker to %q", v)
	}
	resp := push(t, map[string]any{"uids": []string{user}, "data": "kept", "ttl_s": 600})
	if markerValue(t, user) == "" {
		t.Fatal("a stored message left no marker")
	}
	c := device(t, nodeA, user, "phone")
	if p := nextPush(t, c); p.ID != resp.ID {
		t.Fatalf("replayed %s, want %s", p.ID, resp.ID)
	}
	if markerValue(t, user) == "" {
		t.Fatal("the marker went while the message is still pending")
	}
	if err := c.Ack(context.Background(), resp.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the ack reached the inbox", func() error {
		var n int
		openDB(t).QueryRow("SELECT COUNT(*) FROM inbox WHERE uid = ?", user).Scan(&n)
		if n != 0 {
			return fmt.Errorf("%d pending", n)
		}
		return nil
	})
	// Stale now: the next connect looks once, finds nothing, and clears it.
	device(t, nodeB, user, "tablet")
	eventually(t, "the stale marker cleared", func() error {
		if v := markerValue(t, user); v != "" {
			return fmt.Errorf("marker %q", v)
		}
		return nil
	})
	noPush(t, device(t, nodeA, user, "laptop"), 300*time.Millisecond)
}

// TestMessageStoredWhileDeviceConnects races a ttl push against the connect of the user's only
// device, many times: whichever comes first, the device gets the message, live or replayed.
func TestMessageStoredWhileDeviceConnects(t *testing.T) {
	const rounds = 30
	var wg sync.WaitGroup
	for i := range rounds {
		user := uniq(fmt.Sprint("race-", i))
		node := nodeA
		if i%2 == 1 {
			node = nodeB
		}
		var id string
		c := make(chan struct{})
		wg.Go(func() {
			defer close(c)
			id = push(t, map[string]any{"uids": []string{user}, "data": i, "ttl_s": 600}).ID
		})
		d := device(t, node, user, "phone")
		<-c
		wg.Go(func() {
			deadline := time.After(10 * time.Second)
			for {
				select {
				case p, ok := <-d.Pushes():
					if !ok {
						t.Errorf("%s: connection closed before the message came", user)
						return
					}
					if p.ID == id {
						return
					}
				case <-deadline:
					t.Errorf("%s: message %s stored while connecting never arrived", user, id)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestAckWhileAnotherDeviceConnects: one device acks while another of the same user connects, and a
// message is stored meanwhile. The newly connected device must get the new message, whatever the
// order; the acked one it may get at most once more (acks reach push-route within a second).
func TestAckWhileAnotherDeviceConnects(t *testing.T) {
	for i := range 10 {
		user := uniq(fmt.Sprint("ack-race-", i))
		first := push(t, map[string]any{"uids": []string{user}, "data": "first", "ttl_s": 600})
		a := device(t, nodeA, user, "a")
		if p := nextPush(t, a); p.ID != first.ID {
			t.Fatalf("replayed %s, want %s", p.ID, first.ID)
		}
		var wg sync.WaitGroup
		var second string
		wg.Go(func() {
			if err := a.Ack(context.Background(), first.ID); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			second = push(t, map[string]any{"uids": []string{user}, "data": "second", "ttl_s": 600}).ID
		})
		dev := device(t, nodeB, user, "b")
		wg.Wait()
		deadline := time.After(10 * time.Second)
		for got := false; !got; {
			select {
			case p := <-dev.Pushes():
				got = p.ID == second
				if !got && p.ID != first.ID {
					t.Fatalf("unexpected push %+v", p)
				}
			case <-deadline:
				t.Fatalf("round %d: the message stored while b connected (%s) never reached b", i, second)
			}
		}
	}
}
