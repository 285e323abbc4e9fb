package main

import (
	"context"
	"errors"

	"github.com/redis/go-redis/v9"

	"github.com/heraldpush/herald/pkg/routes"
)

// lookupResult is one push's share of a batched route lookup.
type lookupResult struct {
	routes map[string][]routes.Route
	err    error
}

// lookupBatch reads the routes of several pushes in one pipeline and hands each its own uids' routes.
// When Redis refuses a command of a shared pipeline (a key of the wrong type, say), each push is
// looked up again on its own, so only the pushes naming that key fail; when Redis cannot be reached,
// all of them fail at once rather than each waiting out its own timeout.
func (d *dispatcher) lookupBatch(ctx context.Context, reqs [][]string) ([]lookupResult, error) {
	d.metrics.lookupBatch.Observe(float64(len(reqs)))
	if len(reqs) == 1 {
		found, err := d.routes.Lookup(ctx, reqs[0])
		return []lookupResult{{routes: found, err: err}}, nil
	}
	var all []string
	for _, uids := range reqs {
		all = append(all, uids...)
	}
	out := make([]lookupResult, len(reqs))
	found, err := d.routes.Lookup(ctx, all)
	var refused redis.Error
	switch {
	case errors.As(err, &refused):
		for i, uids := range reqs {
			out[i].routes, out[i].err = d.routes.Lookup(ctx, uids)
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
