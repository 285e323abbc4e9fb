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
	live    func() []string // the live nodes' ids, whose synced marks every lookup reads
	metrics *metrics
	batcher *coalesce.Batcher[[]string, lookupResult]
}

// lookupResult is one push's share of a batched lookup.
type lookupResult struct {
	routes   map[string][]routes.Route
	unsynced []string // live nodes whose routes may be missing (routes.Store.LookupFrom)
	err      error
}

func newRouteLookup(cfg lookupConfig, dir routeDirectory, live func() []string, m *metrics) (*routeLookup, error) {
	l := &routeLookup{dir: dir, live: live, metrics: m}
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

// lookup returns the routes of uids (uid → routes; a uid without any is absent) and the live nodes
// whose routes may be missing from them.
func (l *routeLookup) lookup(ctx context.Context, uids []string) (map[string][]routes.Route, []string, error) {
	res, err := l.batcher.Do(ctx, uids)
	if err != nil {
		return nil, nil, err
	}
	return res.routes, res.unsynced, res.err
}

// lookupBatch reads the routes of several pushes in one pipeline and hands each its own uids' routes.
// When Redis refuses a command of a shared pipeline (a key of the wrong type, say), each push is
// looked up again on its own, so only the pushes naming that key fail; when Redis cannot be reached,
// all of them fail at once rather than each waiting out its own timeout.
func (l *routeLookup) lookupBatch(ctx context.Context, reqs [][]string) ([]lookupResult, error) {
	l.metrics.lookupBatch.Observe(float64(len(reqs)))
	live := l.live()
	if len(reqs) == 1 {
		found, unsynced, err := l.dir.LookupFrom(ctx, reqs[0], live)
		return []lookupResult{{routes: found, unsynced: unsynced, err: err}}, nil
	}
	var all []string
	for _, uids := range reqs {
		all = append(all, uids...)
	}
	out := make([]lookupResult, len(reqs))
	found, unsynced, err := l.dir.LookupFrom(ctx, all, live)
	var refused redis.Error
	switch {
	case errors.As(err, &refused):
		for i, uids := range reqs {
			out[i].routes, out[i].unsynced, out[i].err = l.dir.LookupFrom(ctx, uids, live)
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
		out[i].routes, out[i].unsynced = mine, unsynced
	}
	return out, nil
}
