package main

import (
	"context"
	"log/slog"
	"time"
)

// staleRoute names routes of uid on node that the node does not hold (any more).
type staleRoute struct {
	uid, node string
	connIDs   []string
}

// staleRemover deletes stale routes in the background (compare-and-delete: only those exact entries).
// Its queue is bounded; a route that does not fit is found stale again on the next push to that user.
type staleRemover struct {
	dir     routeDirectory
	logger  *slog.Logger
	metrics *metrics
	queue   chan staleRoute
}

func newStaleRemover(dir routeDirectory, logger *slog.Logger, m *metrics) *staleRemover {
	return &staleRemover{dir: dir, logger: logger, metrics: m, queue: make(chan staleRoute, 4096)}
}

// add queues a removal without waiting.
func (r *staleRemover) add(s staleRoute) {
	select {
	case r.queue <- s:
	default:
		r.metrics.staleDropped.Inc()
	}
}

// run removes what is queued until ctx ends.
func (r *staleRemover) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-r.queue:
			opCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
			n, err := r.dir.RemoveStale(opCtx, s.uid, s.node, s.connIDs)
			cancel()
			if err != nil {
				r.logger.Warn("remove stale routes", "uid", s.uid, "node", s.node, "err", err)
				continue
			}
			r.metrics.staleRemoved.Add(float64(n))
		}
	}
}
