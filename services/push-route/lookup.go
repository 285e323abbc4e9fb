package main

import (
	"context"
	"time"

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
	routes.Found
	err error
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

// lookup returns the routes of uids (in a map that may hold other pushes' uids too, so read it by
// uid), the live nodes whose routes may be missing from them, and the
// uids whose routes could not be read (routes.Found); it fails when none of them could be.
func (l *routeLookup) lookup(ctx context.Context, uids []string) (routes.Found, error) {
	res, err := l.batcher.Do(ctx, uids)
	if err != nil {
		return routes.Found{}, err
	}
	return res.Found, res.err
}

// lookupBatch reads the routes of several pushes in one pipeline and hands each its own uids' share.
// A uid Redis cannot answer for (its master down, a key of the wrong type) fails only itself, and a
// push only when none of its uids could be read.
func (l *routeLookup) lookupBatch(ctx context.Context, reqs [][]string) ([]lookupResult, error) {
	l.metrics.lookupBatch.Observe(float64(len(reqs)))
	live := l.live()
	if len(reqs) == 1 {
		found, err := l.dir.LookupFrom(ctx, reqs[0], live)
		return []lookupResult{{Found: found, err: err}}, nil
	}
	var all []string
	for _, uids := range reqs {
		all = append(all, uids...)
	}
	found, err := l.dir.LookupFrom(ctx, all, live)
	if err != nil {
		return nil, err
	}
	var failed map[string]bool
	if len(found.Failed) > 0 {
		failed = make(map[string]bool, len(found.Failed))
		for _, uid := range found.Failed {
			failed[uid] = true
		}
	}
	out := make([]lookupResult, len(reqs))
	for i, uids := range reqs {
		// The pushes share the batch's map, each reading its own uids in it (groupByNode): a map
		// per push would cost more than the lookup's own parsing.
		mine := routes.Found{Routes: found.Routes, Unsynced: found.Unsynced}
		for _, uid := range uids {
			if failed[uid] {
				mine.Failed = append(mine.Failed, uid)
			}
		}
		if len(mine.Failed) > 0 {
			mine.Err = found.Err
			if len(mine.Failed) == len(uids) {
				out[i].err = found.Err
				continue
			}
		}
		out[i].Found = mine
	}
	return out, nil
}
