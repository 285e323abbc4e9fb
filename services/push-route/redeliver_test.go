package main

import (
	"context"
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/services/push-route/internal/inbox"
)

// TestRedisOutageRedeliversToConnectedDevices: a ttl push answered while Redis is down (stored, not
// delivered) reaches the device that stayed connected soon after Redis is back, not only at its next
// connect. Redis comes back empty, as a restarted Redis without persistence does, so the message can
// arrive only once the push-server has recorded its routes again.
func TestRedisOutageRedeliversToConnectedDevices(t *testing.T) {
	user := uniq("outage")
	c := device(t, nodeA, user, "phone")
	ctx := context.Background()
	if err := env.redis.Stop(); err != nil {
		t.Fatal(err)
	}
	running := false
	t.Cleanup(func() {
		if !running {
			env.redis.Restart(ctx)
		}
	})
	resp := push(t, map[string]any{"uids": []string{user}, "data": "while redis is down", "ttl_s": 600})
	if r := resp.Results[0]; r.Delivered != 0 || !r.Stored {
		t.Fatalf("result %+v, want stored and not delivered", r)
	}
	time.Sleep(2 * time.Second) // long enough for the push-server to notice the outage
	if err := env.redis.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	running = true
	if p := nextPush(t, c); p.ID != resp.ID {
		t.Fatalf("got %+v, want the message stored during the outage", p)
	}
}

// TestRedisRestartedEmptyRedeliversToConnectedDevices: Redis restarts so fast that lookups work again
// before the push-server has recorded its routes anew (or even noticed): a ttl push made in that gap
// finds no route, yet reaches the device that stayed connected, because the node's synced mark went
// with the data; a later push is delivered directly once the node has recorded its routes again.
func TestRedisRestartedEmptyRedeliversToConnectedDevices(t *testing.T) {
	user := uniq("restart")
	c := device(t, nodeA, user, "phone")
	ctx := context.Background()
	if err := env.redis.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	resp := push(t, map[string]any{"uids": []string{user}, "data": "just after the restart", "ttl_s": 600})
	if p := nextPush(t, c); p.ID != resp.ID {
		t.Fatalf("got %+v, want the message pushed just after the restart", p)
	}
	eventually(t, "a push delivered directly", func() error {
		r := push(t, map[string]any{"uids": []string{user}, "data": "later"})
		if r.Results[0].Delivered != 1 {
			return fmt.Errorf("result %+v", r.Results[0])
		}
		nextPush(t, c)
		return nil
	})
}

// TestSweptNodeReplaysStoredMessages: a node cut off past its ZooKeeper session has its routes swept
// while its devices stay connected to it, and messages stored for them meanwhile find nobody. When the
// node sees its synced mark gone it records its routes again and replays the stored messages of users
// with a pending marker, as at a connect, instead of leaving them for a reconnect that may never come.
func TestSweptNodeReplaysStoredMessages(t *testing.T) {
	user := uniq("swept")
	c := device(t, nodeA, user, "phone")
	ctx := context.Background()
	now := time.Now()
	msg := wire.Message{ID: ulid.Make().String(), Data: json.RawMessage(`"stored while swept"`), TS: now.UnixMilli()}
	if err := inbox.NewStore(openDB(t)).Save(ctx, msg, []string{user}, time.Minute, now); err != nil {
		t.Fatal(err)
	}
	store := routeStore(t)
	if err := store.MarkPending(ctx, []string{user}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := store.SweepNode(ctx, nodeA.id); err != nil {
		t.Fatal(err)
	}
	if p := nextPush(t, c); p.ID != msg.ID {
		t.Fatalf("got %+v, want the stored message replayed", p)
	}
}
