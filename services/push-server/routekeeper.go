package main

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/pkg/routes"
)

// routeKeeper keeps this node's routes in Redis matching its session table. Registering is
// synchronous (a device is welcomed only once it can be reached); unregistering is queued and done by
// a few background goroutines, so mass disconnects do not stall the readers. When Redis is
// unreachable, connections stay open; once it answers again every local route is recorded anew and
// routes of connections that closed meanwhile are removed.
type routeKeeper struct {
	store   *routes.Store
	node    string
	logger  *slog.Logger
	metrics *metrics
	// local lists this node's current routes, for re-recording them.
	local func() []routes.Route
	// replay replays the stored messages of the connections of routes (their users have a pending
	// marker) once the routes are recorded again: pushed while nobody could see those connections,
	// the messages would otherwise wait for a reconnect that may never come.
	replay func(rs []routes.Route)

	up    atomic.Bool
	queue chan routes.Route
	// inWork counts queued removals not yet done; a counter rather than a WaitGroup because adds
	// keep coming while flush waits.
	inWork atomic.Int64

	// mu guards lost: unregistrations that failed while Redis was down.
	mu   sync.Mutex
	lost bool
}

func newRouteKeeper(store *routes.Store, node string, logger *slog.Logger, m *metrics, local func() []routes.Route, replay func([]routes.Route)) *routeKeeper {
	k := &routeKeeper{store: store, node: node, logger: logger, metrics: m, local: local, replay: replay, queue: make(chan routes.Route, 1<<13)}
	k.up.Store(true)
	return k
}

func (k *routeKeeper) healthy() bool { return k.up.Load() }

// register records r and reports whether its user may have pending offline messages.
func (k *routeKeeper) register(r routes.Route) (pending bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	pending, err = k.store.Register(ctx, r)
	if err != nil {
		k.markDown(err)
	}
	return pending, err
}

// unregister queues r's removal. When a mass disconnect fills the queue the caller waits up to a
// second for room (back-pressure on closes) rather than leave the route behind; a removal that still
// does not fit marks the routes lost, and the monitor reconciles them with Redis.
func (k *routeKeeper) unregister(r routes.Route) {
	k.inWork.Add(1)
	select {
	case k.queue <- r:
		return
	default:
	}
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case k.queue <- r:
	case <-t.C:
		k.inWork.Add(-1)
		k.metrics.routeErrors.WithLabelValues("unregister_dropped").Inc()
		k.setLost()
	}
}

func (k *routeKeeper) setLost() {
	k.mu.Lock()
	k.lost = true
	k.mu.Unlock()
}

func (k *routeKeeper) markDown(err error) {
	if k.up.CompareAndSwap(true, false) {
		k.logger.Error("redis unreachable: refusing new connections, keeping existing ones", "err", err)
	}
	k.metrics.routeErrors.WithLabelValues("redis").Inc()
}

// run removes queued routes until ctx ends.
func (k *routeKeeper) run(ctx context.Context, workers int) {
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case r := <-k.queue:
					opCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
					if _, err := k.store.Unregister(opCtx, r); err != nil {
						k.markDown(err)
						k.setLost()
					}
					cancel()
					k.inWork.Add(-1)
				}
			}
		})
	}
	wg.Go(func() { k.monitor(ctx) })
	wg.Wait()
}

// flush waits until every queued removal is done or timeout passes.
func (k *routeKeeper) flush(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	for k.inWork.Load() > 0 {
		if time.Now().After(deadline) {
			k.logger.Warn("route removals still queued at shutdown; push-route will sweep them with the node", "queued", k.inWork.Load())
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// monitor pings Redis every second and repairs the routes when it comes back.
func (k *routeKeeper) monitor(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// The synced mark doubles as the ping: a Redis that answers without it has lost this node's
		// routes (restarted empty, or a replica without them took over), which no error reports.
		pingCtx, cancel := context.WithTimeout(ctx, time.Second)
		synced, err := k.store.Synced(pingCtx, k.node)
		cancel()
		if err != nil {
			k.markDown(err)
			continue
		}
		if k.up.Load() && synced {
			k.reconcileIfLost(ctx)
			continue
		}
		if k.up.Load() {
			k.logger.Warn("redis lost this node's routes (restarted empty, or failed over to a replica without them): recording them again")
		}
		if err := k.resync(ctx); err != nil {
			k.logger.Warn("re-recording routes failed; will retry", "err", err)
			continue
		}
		k.up.Store(true)
		k.logger.Info("redis reachable again: routes re-recorded, accepting connections")
	}
}

// resync records every local route, replays the stored messages of users with a pending marker,
// removes this node's routes that no local connection matches, and marks the routes synced.
func (k *routeKeeper) resync(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	local := k.local()
	pending, err := k.store.RegisterAllPending(ctx, local)
	if err != nil {
		return err
	}
	if len(pending) > 0 {
		go k.replay(pending)
	}
	k.mu.Lock()
	lost := k.lost
	k.lost = false
	k.mu.Unlock()
	if lost {
		if err := k.reconcile(ctx, local); err != nil {
			k.setLost()
			return err
		}
	}
	return k.store.MarkSynced(ctx, k.node)
}

// markSynced marks this node's routes recorded before it announces itself: a new node holds none, so
// they are. When Redis cannot be reached the node starts anyway, and the monitor marks them once it
// has recorded the routes of the connections it took meanwhile.
func (k *routeKeeper) markSynced(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if err := k.store.MarkSynced(ctx, k.node); err != nil {
		k.markDown(err)
	}
}

// reconcileIfLost repairs the routes after removals were dropped while Redis was up.
func (k *routeKeeper) reconcileIfLost(ctx context.Context) {
	k.mu.Lock()
	lost := k.lost
	k.lost = false
	k.mu.Unlock()
	if !lost {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := k.reconcile(ctx, k.local()); err != nil {
		k.setLost()
		k.logger.Warn("reconciling routes after dropped removals failed; will retry", "err", err)
	}
}

// reconcile removes this node's routes in Redis that no local connection holds any more.
func (k *routeKeeper) reconcile(ctx context.Context, local []routes.Route) error {
	held := make(map[string]bool, len(local))
	for _, r := range local {
		held[r.ConnID] = true
	}
	uids, err := k.store.NodeUIDs(ctx, k.node)
	if err != nil {
		return err
	}
	for start := 0; start < len(uids); start += 500 {
		batch := uids[start:min(start+500, len(uids))]
		found, err := k.store.Lookup(ctx, batch)
		if err != nil {
			return err
		}
		for uid, rs := range found {
			var stale []string
			for _, r := range rs {
				if r.Node == k.node && !held[r.ConnID] {
					stale = append(stale, r.ConnID)
				}
			}
			if len(stale) > 0 {
				if _, err := k.store.RemoveStale(ctx, uid, k.node, stale); err != nil {
					return err
				}
			}
		}
	}
	return nil
}
