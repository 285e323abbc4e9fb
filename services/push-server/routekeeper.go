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
//
// Health is kept per Redis server (each master of a cluster, or the one server): a connect is refused
// only when a server its route would be written to is failing, so one master's failure costs only the
// users whose routes live on its slots. A failover (a new master appearing) also re-records every
// route, since the promoted replica may have missed the last writes of the old master.
type routeKeeper struct {
	store   *routes.Store
	node    string
	logger  *slog.Logger
	metrics *metrics
	hooks   routeHooks

	queue chan routes.Route
	// inWork counts queued removals not yet done; a counter rather than a WaitGroup because adds
	// keep coming while flush waits.
	inWork atomic.Int64

	// mu guards lost (unregistrations failed while Redis was down), down (the servers failing, by
	// address), masters (the servers seen last), and stale (the routes need recording again).
	mu      sync.Mutex
	lost    bool
	down    map[string]bool
	masters map[string]bool
	stale   bool
}

// routeHooks are what the keeper needs of the node.
type routeHooks struct {
	// local lists this node's current routes, for re-recording them.
	local func() []routes.Route
	// replay replays the stored messages of the connections of routes (their users have a pending
	// marker) once the routes are recorded again: pushed while nobody could see those connections,
	// the messages would otherwise wait for a reconnect that may never come.
	replay func(rs []routes.Route)
	// recorded is called after the routes were recorded again (Redis came back, maybe empty, or a
	// failover): the node's other entries (its rooms) need writing again too.
	recorded func()
}

func newRouteKeeper(store *routes.Store, node string, logger *slog.Logger, m *metrics, hooks routeHooks) *routeKeeper {
	return &routeKeeper{store: store, node: node, logger: logger, metrics: m, hooks: hooks, queue: make(chan routes.Route, 1<<13), down: map[string]bool{}}
}

// admits tells whether the route of uid could be recorded now: no server it goes to is failing.
func (k *routeKeeper) admits(uid string) bool {
	servers := k.store.ServersOf(context.Background(), routes.Route{UID: uid, Node: k.node})
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, addr := range servers {
		if k.down[addr] {
			return false
		}
	}
	return true
}

// register records r and reports whether its user may have pending offline messages.
func (k *routeKeeper) register(r routes.Route) (pending bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	pending, err = k.store.Register(ctx, r)
	if err != nil {
		// Both of the route's servers, though only one may have failed: the monitor clears the
		// healthy one within a second.
		k.markDown(err, k.store.ServersOf(ctx, r)...)
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

// markDown records that servers failed: connects whose routes go there are refused until the monitor
// sees them answer, and the routes are recorded again then.
func (k *routeKeeper) markDown(err error, servers ...string) {
	k.metrics.routeErrors.WithLabelValues("redis").Inc()
	k.mu.Lock()
	defer k.mu.Unlock()
	k.stale = true
	for _, addr := range servers {
		if !k.down[addr] {
			k.down[addr] = true
			k.logger.Error("redis server failing: refusing the connects whose routes it holds, keeping existing connections", "server", addr, "err", err)
		}
	}
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
						k.markDown(err, k.store.ServersOf(opCtx, r)...)
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

// monitor pings every Redis server each second, and records the routes again when a failing server
// answers again, when a new master appears (a failover), or when Redis lost them.
func (k *routeKeeper) monitor(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		k.check(ctx)
	}
}

// check is one round of monitor.
func (k *routeKeeper) check(ctx context.Context) {
	pingCtx, cancel := context.WithTimeout(ctx, time.Second)
	servers := k.store.Servers(pingCtx)
	// The synced mark tells what no error does: a Redis that answers without it has lost this node's
	// routes (restarted empty, or a replica without them took over).
	synced, syncErr := k.store.Synced(pingCtx, k.node)
	cancel()
	k.mu.Lock()
	failing := false
	for addr, err := range servers {
		switch {
		case err != nil && !k.down[addr]:
			k.down[addr] = true
			k.stale = true
			k.logger.Error("redis server failing: refusing the connects whose routes it holds, keeping existing connections", "server", addr, "err", err)
		case err == nil && k.down[addr]:
			delete(k.down, addr)
			k.logger.Info("redis server answering again", "server", addr)
		case err == nil && len(k.masters) > 0 && !k.masters[addr]:
			k.stale = true
			k.logger.Warn("new redis master (a failover?): recording the routes again, in case it missed the last writes", "server", addr)
		}
		failing = failing || err != nil
	}
	for addr := range k.down {
		if _, ok := servers[addr]; !ok {
			delete(k.down, addr) // no longer a master: a replica took over its slots
		}
	}
	k.masters = make(map[string]bool, len(servers))
	for addr, err := range servers {
		if err == nil {
			k.masters[addr] = true
		}
	}
	if syncErr == nil && !synced && !k.stale {
		k.stale = true
		k.logger.Warn("redis lost this node's routes (restarted empty, or failed over to a replica without them): recording them again")
	}
	stale := k.stale
	k.mu.Unlock()
	if !stale {
		k.reconcileIfLost(ctx)
		return
	}
	if failing {
		return // recorded once every server answers; meanwhile connects to the failing ones are refused
	}
	if err := k.resync(ctx); err != nil {
		k.logger.Warn("re-recording routes failed; will retry", "err", err)
		return
	}
	k.mu.Lock()
	k.stale = false
	k.mu.Unlock()
	k.logger.Info("routes recorded again")
	if k.hooks.recorded != nil {
		k.hooks.recorded()
	}
}

// resync records every local route, replays the stored messages of users with a pending marker,
// removes this node's routes that no local connection matches, and marks the routes synced.
func (k *routeKeeper) resync(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	local := k.hooks.local()
	pending, err := k.store.RegisterAllPending(ctx, local)
	if err != nil {
		return err
	}
	if len(pending) > 0 {
		go k.hooks.replay(pending)
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
	if err := k.reconcile(ctx, k.hooks.local()); err != nil {
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
