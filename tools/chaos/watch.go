package main

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/heraldpush/herald/pkg/apiclient"
)

// connWatch counts the connections the push-servers hold, once a second, from their internal stats
// (a node that does not answer counts none: its devices cannot be reached either).
type connWatch struct {
	s   *stackInfo
	api *apiclient.NodeClient

	mu      sync.Mutex
	samples []connSample
}

type connSample struct {
	At        float64 `json:"at_s"`
	Connected int     `json:"connected"`
}

func newConnWatch(s *stackInfo) *connWatch {
	return &connWatch{s: s, api: apiclient.NewNodeClient(&http.Client{Timeout: time.Second}, s.InternalSecret)}
}

func (w *connWatch) count(ctx context.Context) int {
	total := 0
	for _, ps := range w.s.PushServers {
		ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		st, err := w.api.Stats(ctx, ps.InternalURL)
		cancel()
		if err == nil && !st.Draining {
			total += st.Connections
		}
	}
	return total
}

func (w *connWatch) waitAll(ctx context.Context, n int, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		got := w.count(ctx)
		if got >= n {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d devices connected after %s (a dedicated stack holds only the chaos devices)", got, n, limit)
		}
		if !sleep(ctx, 200*time.Millisecond) {
			return ctx.Err()
		}
	}
}

func (w *connWatch) sample(ctx context.Context, start time.Time) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		n := w.count(ctx)
		w.mu.Lock()
		w.samples = append(w.samples, connSample{At: time.Since(start).Seconds(), Connected: n})
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *connWatch) series() []connSample {
	w.mu.Lock()
	defer w.mu.Unlock()
	return append([]connSample(nil), w.samples...)
}
