package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/routes"
)

// nodeDirectory is the live push-servers as ZooKeeper shows them. When a node vanishes, its routes are
// swept from Redis: SweepNode is idempotent, so every push-route instance may do it.
type nodeDirectory struct {
	routes  sweeper
	logger  *slog.Logger
	metrics *metrics
	// connected reports whether the ZooKeeper view is current; while it is not, the last known nodes
	// stay, and nothing is swept on the strength of a list that may just be empty for lack of a session.
	connected func(context.Context) error
	// lookup reads one node's znode, for a node the watch has not shown yet.
	lookup func(id string) (discovery.Node, bool, error)
	// sweepDelay is how long a vanished node's routes wait before they are swept (the ZooKeeper
	// session timeout).
	sweepDelay time.Duration

	// mu guards nodes and sweeping.
	mu       sync.RWMutex
	nodes    map[string]discovery.Node
	sweeping map[string]bool
}

// sweeper removes every route of a node, and its entries in the room registry.
type sweeper interface {
	SweepNode(ctx context.Context, node string) (int, error)
	SweepNodeRooms(ctx context.Context, node string) (int, error)
}

var _ sweeper = (*routes.Store)(nil)

func newNodeDirectory(store sweeper, logger *slog.Logger, m *metrics, connected func(context.Context) error, lookup func(string) (discovery.Node, bool, error), sweepDelay time.Duration) *nodeDirectory {
	return &nodeDirectory{routes: store, logger: logger, metrics: m, connected: connected, lookup: lookup, sweepDelay: sweepDelay, nodes: map[string]discovery.Node{}, sweeping: map[string]bool{}}
}

// nodeState is what a route's node is known to be.
type nodeState int

const (
	nodeLive    nodeState = iota
	nodeDead              // ZooKeeper says it has no znode
	nodeUnknown           // ZooKeeper could not be asked
)

// resolve finds a route's node. A node the watch has not shown yet (a new node whose first
// connections arrive within milliseconds of its registration) is looked up in ZooKeeper before it is
// called dead, so its fresh routes are never swept.
func (d *nodeDirectory) resolve(id string) (discovery.Node, nodeState) {
	if n, ok := d.get(id); ok {
		return n, nodeLive
	}
	n, ok, err := d.lookup(id)
	switch {
	case err != nil:
		d.logger.Warn("look up push-server in zookeeper", "node", id, "err", err)
		return discovery.Node{}, nodeUnknown
	case !ok:
		return discovery.Node{}, nodeDead
	}
	d.mu.Lock()
	if _, seen := d.nodes[id]; !seen {
		d.nodes[id] = n
	}
	d.mu.Unlock()
	return n, nodeLive
}

// update takes a new list from the ZooKeeper watch.
func (d *nodeDirectory) update(nodes []discovery.Node) {
	if err := d.connected(context.Background()); err != nil {
		d.logger.Warn("zookeeper view not current; keeping the last known push-servers", "err", err)
		return
	}
	next := make(map[string]discovery.Node, len(nodes))
	for _, n := range nodes {
		next[n.ID] = n
	}
	d.mu.Lock()
	var gone []string
	for id := range d.nodes {
		if _, ok := next[id]; !ok {
			gone = append(gone, id)
		}
	}
	d.nodes = next
	d.mu.Unlock()
	d.metrics.liveNodes.Set(float64(len(next)))
	for _, id := range gone {
		d.sweep(id)
	}
}

// live reports whether id is a live node as the watch shows it.
func (d *nodeDirectory) live(id string) bool {
	_, ok := d.get(id)
	return ok
}

func (d *nodeDirectory) get(id string) (discovery.Node, bool) {
	d.mu.RLock()
	defer d.mu.RUnlock()
	n, ok := d.nodes[id]
	return n, ok
}

func (d *nodeDirectory) all() []discovery.Node {
	d.mu.RLock()
	defer d.mu.RUnlock()
	out := make([]discovery.Node, 0, len(d.nodes))
	for _, n := range d.nodes {
		out = append(out, n)
	}
	return out
}

// sweep removes a dead node's routes in the background, once at a time per node.
func (d *nodeDirectory) sweep(id string) {
	d.mu.Lock()
	if d.sweeping[id] {
		d.mu.Unlock()
		return
	}
	d.sweeping[id] = true
	d.mu.Unlock()
	go func() {
		defer func() {
			d.mu.Lock()
			delete(d.sweeping, id)
			d.mu.Unlock()
		}()
		// A znode can vanish with a node that lives: when ZooKeeper expires every session at once (it
		// was frozen or restarted), each node registers again moments later, its connections and
		// routes intact. So the sweep waits a session timeout and asks ZooKeeper once more.
		time.Sleep(d.sweepDelay)
		switch _, back, err := d.lookup(id); {
		case err != nil:
			d.logger.Warn("dead push-server's routes not swept: zookeeper unavailable; the next push or change tries again", "node", id, "err", err)
			return
		case back:
			d.logger.Info("push-server registered again; its routes stay", "node", id)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		n, err := d.routes.SweepNode(ctx, id)
		if err != nil {
			d.logger.Error("sweep dead push-server's routes", "node", id, "err", err)
			return
		}
		d.metrics.swept.Add(float64(n))
		rooms, err := d.routes.SweepNodeRooms(ctx, id)
		if err != nil {
			d.logger.Error("sweep dead push-server's rooms", "node", id, "err", err)
		}
		d.logger.Info("swept dead push-server's routes", "node", id, "routes", n, "rooms", rooms)
	}()
}
