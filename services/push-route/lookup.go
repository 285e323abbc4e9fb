package main

import (
	"context"
	"errors"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldpush/herald/pkg/routes"
	"github.com/heraldpush/herald/services/push-route/internal/coalesce"
)

// lookupConfig bounds the coalescing of route lookups.
type lookupConfig struct {
	MaxUIDs  int           // uids in one Redis pipeline
	InFlight int           // pipelines in flight
	Queue    int           // lookups waiting for a pipeline; beyond it a push is refused as overload
	Timeout  time.Duration // one pipeline, and a lookup's wait for one
}

// routeLookup reads the routes of pushes from the directory. Lookups that arrive while a pipeline is
// in flight wait and go together in the next one (package coalesce).
type routeLookup struct {
	dir     routeDirectory
	metrics *metrics
	batcher *coalesce.Batcher[[]string, lookupResult]
}

// lookupResult is one push's share of a batched lookup.
type lookupResult struct {
	routes map[string][]routes.Route
	err    error
}

func newRouteLookup(cfg lookupConfig, dir routeDirectory, m *metrics) (*routeLookup, error) {
	l := &routeLookup{dir: dir, metrics: m}
	b, err := coalesce.New(coalesce.Config{
		MaxInFlight: cfg.InFlight,
		MaxWeight:   cfg.MaxUIDs,
		MaxQueue:    cfg.Queue,
		Timeout:     cfg.Timeout,
	}, func(uids []string) int { return len(uids) }, l.lookupBatch)
	if err != nil {
		return nil, err
	}
	l.batcher = b
	return l, nil
}

// run sends the queued lookups until ctx ends.
func (l *routeLookup) run(ctx context.Context) { l.batcher.Run(ctx) }

// lookup returns the routes of uids (uid → routes; a uid without any is absent).
func (l *routeLookup) lookup(ctx context.Context, uids []string) (map[string][]routes.Route, error) {
	res, err := l.batcher.Do(ctx, uids)
	if err != nil {
		return nil, err
	}
	return res.routes, res.err
}

// lookupBatch reads the routes of several pushes in one pipeline and hands each its own uids' routes.
// When Redis refuses a command of a shared pipeline (a key of the wrong type, say), each push is
// looked up again on its own, so only the pushes naming that key fail; when Redis cannot be reached,
// all of them fail at once rather than each waiting out its own timeout.
func (l *routeLookup) lookupBatch(ctx context.Context, reqs [][]string) ([]lookupResult, error) {
	l.metrics.lookupBatch.Observe(float64(len(reqs)))
	if len(reqs) == 1 {
		found, err := l.dir.Lookup(ctx, reqs[0])
		return []lookupResult{{routes: found, err: err}}, nil
	}
	var all []string
	for _, uids := range reqs {
		all = append(all, uids...)
	}
	out := make([]lookupResult, len(reqs))
	found, err := l.dir.Lookup(ctx, all)
	var refused redis.Error
	switch {
	case errors.As(err, &refused):
		for i, uids := range reqs {
			out[i].routes, out[i].err = l.dir.Lookup(ctx, uids)
		}
		return out, nil
	case err != nil:
		return nil, err
	}
	for i, uids := range reqs {
		mine := make(map[string][]routes.Route, len(uids))
		for _, uid := range uids {
			if rs, ok := found[uid]; ok {
				mine[uid] = rs
			}
		}
		out[i].routes = mine
	}
	return out, nil
}
