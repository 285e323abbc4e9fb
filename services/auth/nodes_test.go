package main

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/httpapi"
)

// TestPickerHoldsLastViewOverAnEmptyList follows the picker through a ZooKeeper outage: no session
// (503 unavailable), then a fresh session that lists nothing while the push-servers re-register (the
// last view serves, for a grace period), then the nodes back, or not.
func TestPickerHoldsLastViewOverAnEmptyList(t *testing.T) {
	var zkErr error
	now := time.Unix(1_000_000, 0)
	p := newNodePicker(newMetrics(prometheus.NewRegistry()), func(context.Context) error { return zkErr }, 10*time.Second)
	p.now = func() time.Time { return now }
	a := discovery.Node{ID: "ps-a", WSURL: "ws://a/ws", Weight: 1}
	b := discovery.Node{ID: "ps-b", WSURL: "ws://b/ws", Weight: 1}
	picks := func(want string) {
		t.Helper()
		n, err := p.pick(context.Background(), "alice", "")
		if want == "" {
			if err == nil {
				t.Fatalf("picked %s, want an error", n.ID)
			}
			return
		}
		if err != nil || n.ID != want {
			t.Fatalf("picked %q, %v; want %s", n.ID, err, want)
		}
	}
	code := func() string {
		_, err := p.pick(context.Background(), "alice", "")
		var apiErr *httpapi.Error
		if !errors.As(err, &apiErr) {
			t.Fatalf("error %v", err)
		}
		return apiErr.Code
	}

	p.update([]discovery.Node{a})
	picks("ps-a")

	zkErr = errors.New("no session")
	p.update([]discovery.Node{}) // what the watch publishes once the session is lost too long
	if c := code(); c != httpapi.CodeUnavailable {
		t.Fatalf("without a session: %s, want unavailable", c)
	}

	zkErr = nil
	p.update([]discovery.Node{}) // a fresh session; the nodes have not re-registered yet
	picks("ps-a")
	now = now.Add(9 * time.Second)
	picks("ps-a")
	p.update([]discovery.Node{b}) // back, as another node: believed at once
	picks("ps-b")

	p.update([]discovery.Node{})
	picks("ps-b")
	now = now.Add(11 * time.Second) // nobody came back within the grace
	if c := code(); c != httpapi.CodeNoPushServer {
		t.Fatalf("after the grace: %s, want no_push_server", c)
	}

	// Every node draining is a decision, not an outage: no grace.
	p.update([]discovery.Node{a})
	a.Draining = true
	p.update([]discovery.Node{a})
	if c := code(); c != httpapi.CodeNoPushServer {
		t.Fatalf("all draining: %s, want no_push_server", c)
	}
	p.update([]discovery.Node{}) // the drained nodes exit: their view is not brought back
	if c := code(); c != httpapi.CodeNoPushServer {
		t.Fatalf("after a drain and exit: %s, want no_push_server", c)
	}
}
