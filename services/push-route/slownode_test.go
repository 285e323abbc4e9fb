package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/routes"
	"github.com/heraldpush/herald/pkg/wire"
)

// TestSlowNodeDoesNotHoldBackOthers registers a push-server that answers nothing within the node
// timeout: a user with one device there and one on a healthy node gets the message on the healthy
// node while the call to the slow one is still waiting, and the slow node's route is kept (slow is not
// dead).
func TestSlowNodeDoesNotHoldBackOthers(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)

	zk := dialZK(t)
	if _, err := zk.Register(context.Background(), discovery.Node{ID: "ps-slow", WSURL: "ws://127.0.0.1:1/ws", InternalURL: slow.URL, Weight: 1}); err != nil {
		t.Fatal(err)
	}

	uid := uniq("split")
	store := routeStore(t)
	slowRoute := routes.Route{UID: uid, ConnID: "ps-slow:1", Node: "ps-slow", Device: "slow-device", ConnectedAt: time.Now()}
	if _, err := store.Register(context.Background(), slowRoute); err != nil {
		t.Fatal(err)
	}
	fast := device(t, nodeA, uid, "fast-device")

	done := make(chan wire.PushResponse, 1)
	go func() { done <- push(t, map[string]any{"uids": []string{uid}, "data": "hi"}) }()
	select {
	case <-fast.Pushes():
	case <-time.After(10 * time.Second):
		t.Fatal("the healthy node's device got nothing")
	}
	select {
	case r := <-done:
		t.Fatalf("the push call returned (%+v) before the slow node's timeout: the slow node was not called", r)
	default: // still waiting for the slow node, as it should: the healthy device did not wait for it
	}
	resp := <-done
	if resp.Results[0].Delivered != 1 {
		t.Fatalf("result %+v, want 1 delivered (the healthy node)", resp.Results[0])
	}
	got, err := store.Lookup(context.Background(), []string{uid})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range got[uid] {
		if r.Node == "ps-slow" {
			return
		}
	}
	t.Fatalf("the slow node's route was removed: %+v", got[uid])
}
