package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldpush/herald/pkg/discovery"
)

// countingSweeper records the nodes swept.
type countingSweeper struct {
	mu    sync.Mutex
	swept []string
}

func (s *countingSweeper) SweepNode(_ context.Context, node string) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.swept = append(s.swept, node)
	return 1, nil
}

// SweepNodeRooms is swept with the routes; the routes are what this test counts.
func (s *countingSweeper) SweepNodeRooms(context.Context, string) (int, error) { return 0, nil }

func (s *countingSweeper) nodes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.swept...)
}

// TestVanishedNodeSweptOnlyIfItStaysGone: a node whose znode vanishes and comes back within the delay
// (ZooKeeper expired every session at once) keeps its routes; one that stays gone loses them.
func TestVanishedNodeSweptOnlyIfItStaysGone(t *testing.T) {
	var mu sync.Mutex
	registered := map[string]bool{"back": true, "gone": true}
	lookup := func(id string) (discovery.Node, bool, error) {
		mu.Lock()
		defer mu.Unlock()
		return discovery.Node{ID: id}, registered[id], nil
	}
	sw := &countingSweeper{}
	d := newNodeDirectory(sw, slog.New(slog.NewTextHandler(io.Discard, nil)), newMetrics(prometheus.NewRegistry()),
		func(context.Context) error { return nil }, lookup, 100*time.Millisecond)
	d.update([]discovery.Node{{ID: "back"}, {ID: "gone"}})
	mu.Lock()
	registered["back"], registered["gone"] = false, false
	mu.Unlock()
	d.update(nil) // both znodes vanished
	mu.Lock()
	registered["back"] = true // registered again within the delay
	mu.Unlock()
	eventually(t, "the node that stayed gone swept", func() error {
		if got := sw.nodes(); len(got) != 1 || got[0] != "gone" {
			return fmt.Errorf("swept %v, want only gone", got)
		}
		return nil
	})
	time.Sleep(200 * time.Millisecond)
	if got := sw.nodes(); len(got) != 1 {
		t.Fatalf("swept %v; the node that came back lost its routes", got)
	}
}
