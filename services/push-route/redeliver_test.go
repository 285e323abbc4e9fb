package main

import (
	"context"
	"testing"
	"time"
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
