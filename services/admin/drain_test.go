package main

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"

	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/httpapi"
)

// TestDrainLastNodeNeedsForce: draining the last push-server that takes logins is refused with a
// conflict that says why, unless forced; with another node taking logins it goes through.
func TestDrainLastNodeNeedsForce(t *testing.T) {
	var drained atomic.Int32
	node := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		drained.Add(1)
		httpapi.WriteJSON(w, http.StatusAccepted, map[string]string{"status": "draining"})
	}))
	defer node.Close()
	c := newCluster(node.Client(), "secret", slog.New(slog.DiscardHandler))
	ctx := context.Background()

	c.update([]discovery.Node{{ID: "a", InternalURL: node.URL}, {ID: "b", InternalURL: node.URL, Draining: true}})
	var apiErr *httpapi.Error
	if err := c.drain(ctx, "a", false); !errors.As(err, &apiErr) || apiErr.Code != httpapi.CodeConflict || drained.Load() != 0 {
		t.Fatalf("last node without force: %v (drain calls %d), want a conflict and no call", err, drained.Load())
	}
	if err := c.drain(ctx, "a", true); err != nil || drained.Load() != 1 {
		t.Fatalf("last node forced: %v (drain calls %d)", err, drained.Load())
	}
	c.update([]discovery.Node{{ID: "a", InternalURL: node.URL}, {ID: "b", InternalURL: node.URL}})
	if err := c.drain(ctx, "a", false); err != nil || drained.Load() != 2 {
		t.Fatalf("with another node taking logins: %v (drain calls %d)", err, drained.Load())
	}
}
