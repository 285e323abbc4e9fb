package main

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/heraldpush/herald/pkg/apiclient"
	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/routes"
	"github.com/heraldpush/herald/pkg/wire"
)

// routeDirectory is what push-route needs of the uid → connections directory.
type routeDirectory interface {
	Lookup(ctx context.Context, uids []string) (map[string][]routes.Route, error)
	LookupFrom(ctx context.Context, uids, nodes []string) (routes.Found, error)
	RemoveStale(ctx context.Context, uid, node string, connIDs []string) (int, error)
}

var _ routeDirectory = (*routes.Store)(nil)

// nodeResolver tells what a route's node is: live (with its address), dead, or unknown for now.
type nodeResolver interface {
	resolve(id string) (discovery.Node, nodeState)
	sweep(id string) // a dead node's routes
	all() []discovery.Node
	live(id string) bool
}

var _ nodeResolver = (*nodeDirectory)(nil)

// nodeAPI is the part of the push-servers' internal API a push needs.
type nodeAPI interface {
	DeliverBatch(ctx context.Context, nodeURL string, form apiclient.BatchForm, items []wire.DeliverItem) ([]wire.DeliverResponse, error)
	Broadcast(ctx context.Context, nodeURL, traceID string, m wire.Message) (int, error)
}

var _ nodeAPI = (*apiclient.NodeClient)(nil)

// dispatchConfig bounds a dispatcher.
type dispatchConfig struct {
	NodeTimeout time.Duration // one push-server call
	Lookup      lookupConfig
	Send        sendConfig
}

// dispatcher delivers a message to the nodes holding its users: one route lookup for all its uids
// (routeLookup), then one deliver-batch item per owning node (nodeSenders), all nodes at once. A slow
// or dead node costs only its own users their delivery, after at most twice the node timeout.
type dispatcher struct {
	lookups *routeLookup
	senders *nodeSenders
	stale   *staleRemover
	nodes   nodeResolver
	api     nodeAPI
	timeout time.Duration
	logger  *slog.Logger
	metrics *metrics
}

func newDispatcher(cfg dispatchConfig, dir routeDirectory, nodes nodeResolver, api nodeAPI, logger *slog.Logger, m *metrics) (*dispatcher, error) {
	cfg.Lookup.Timeout, cfg.Send.Timeout = cfg.NodeTimeout, cfg.NodeTimeout
	lookups, err := newRouteLookup(cfg.Lookup, dir, liveIDs(nodes), m)
	if err != nil {
		return nil, err
	}
	return &dispatcher{
		lookups: lookups,
		senders: newNodeSenders(cfg.Send, api, nodes.live, m),
		stale:   newStaleRemover(dir, logger, m),
		nodes:   nodes,
		api:     api,
		timeout: cfg.NodeTimeout,
		logger:  logger,
		metrics: m,
	}, nil
}

// run drives the lookups, the node queues and stale-route removal until ctx ends, then waits for
// the batches in flight.
func (d *dispatcher) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { d.lookups.run(ctx) })
	wg.Go(func() { d.senders.run(ctx) })
	wg.Go(func() { d.stale.run(ctx) })
	wg.Wait()
}

// deliver writes m to every connection of uids and returns how many connections each uid got, and the
// uids whose node failed (slow, down, or overloaded), who may have missed a connection. It fails only
// when the routes could not be read.
func (d *dispatcher) deliver(ctx context.Context, traceID string, m wire.Message, uids []string) (delivered map[string]int, failed []string, err error) {
	found, err := d.lookups.lookup(ctx, uids)
	if err != nil {
		return nil, nil, err
	}
	shares, dead, unsure := groupByNode(uids, found.Routes, d.nodes.resolve)
	// Uids whose routes could not be read (their Redis master failing) count as failed like those of
	// a failing node: a stored message is tried again once their routes can be read.
	failed = append(unsure, found.Failed...)
	if len(found.Failed) > 0 {
		d.metrics.lookupFailedUIDs.Add(float64(len(found.Failed)))
		d.logger.Warn("routes of some uids could not be read", "uids", len(found.Failed), "of", len(uids), "err", found.Err, "trace_id", traceID)
	}
	if len(found.Unsynced) > 0 {
		// A node is still recording its routes after Redis lost them: any of these users may hold
		// a connection there that the lookup could not see, so all count as failed and a stored
		// message is tried again until the node has marked its routes recorded.
		failed = slices.Clone(uids)
	}
	for _, s := range dead {
		// Swept as a whole once the node stays gone (nodeDirectory.sweep); meanwhile its users count
		// as failed, so a stored message is tried again when they reconnect elsewhere.
		d.nodes.sweep(s.node)
		failed = append(failed, s.uid)
	}
	if len(shares) == 1 {
		// Most pushes name users of one node: its answer is the whole answer, with no goroutine,
		// lock or merged map to pay for.
		counts, err := d.deliverTo(ctx, traceID, m, shares[0])
		if err != nil {
			failed = append(failed, shares[0].uids...)
		}
		return counts, failed, nil
	}
	delivered, nodesFailed := d.deliverAll(ctx, traceID, m, shares)
	return delivered, append(failed, nodesFailed...), nil
}

// deliverAll hands m to several nodes at once and sums their answers; the uids of the nodes that
// failed come back apart.
func (d *dispatcher) deliverAll(ctx context.Context, traceID string, m wire.Message, shares []*nodeShare) (delivered map[string]int, failed []string) {
	delivered = make(map[string]int)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, s := range shares {
		wg.Go(func() {
			counts, err := d.deliverTo(ctx, traceID, m, s)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				failed = append(failed, s.uids...)
				return
			}
			for uid, n := range counts {
				delivered[uid] += n
			}
		})
	}
	wg.Wait()
	return delivered, failed
}

// deliverTo hands m to one node for its share of the users, and queues the removal of the routes the
// node says it does not hold.
func (d *dispatcher) deliverTo(ctx context.Context, traceID string, m wire.Message, s *nodeShare) (map[string]int, error) {
	resp, err := d.senders.send(ctx, s.node, wire.DeliverItem{Message: m, UIDs: s.uids, TraceID: traceID})
	if err != nil {
		d.metrics.nodeErrors.WithLabelValues(s.node.ID).Inc()
		d.logger.Warn("deliver to push-server failed", "node", s.node.ID, "uids", len(s.uids), "err", err, "trace_id", traceID)
		return nil, err
	}
	counts := make(map[string]int, len(resp.Results))
	for i, res := range resp.Results {
		counts[res.UID] += res.Delivered
		if gone := disowned(s.connsOf(i, res.UID), res.ConnIDs); len(gone) > 0 {
			d.stale.add(staleRoute{uid: res.UID, node: s.node.ID, connIDs: gone})
		}
	}
	return counts, nil
}

// liveIDs lists the ids of the live nodes, whose routes a lookup must be able to trust.
func liveIDs(nodes nodeResolver) func() []string {
	return func() []string {
		all := nodes.all()
		ids := make([]string, len(all))
		for i, n := range all {
			ids[i] = n.ID
		}
		return ids
	}
}

// broadcast writes m to every connection on every live node and returns how many took it.
func (d *dispatcher) broadcast(ctx context.Context, traceID string, m wire.Message) int {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	var total int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, node := range d.nodes.all() {
		wg.Go(func() {
			n, err := d.api.Broadcast(ctx, node.InternalURL, traceID, m)
			if err != nil {
				d.metrics.nodeErrors.WithLabelValues(node.ID).Inc()
				d.logger.Warn("broadcast to push-server failed", "node", node.ID, "err", err, "trace_id", traceID)
				return
			}
			mu.Lock()
			total += n
			mu.Unlock()
		})
	}
	wg.Wait()
	return total
}

// nodeShare is the part of a push one node gets: its users and the connections Redis says it holds.
type nodeShare struct {
	node  discovery.Node
	uids  []string
	conns [][]string // conns[i]: the conn ids of uids[i]
}

// connsOf returns the conn ids of uid, the i-th result of the node's answer: a node answers its uids
// in order, so the search is there for an answer that does not.
func (s *nodeShare) connsOf(i int, uid string) []string {
	if i >= len(s.uids) || s.uids[i] != uid {
		if i = slices.Index(s.uids, uid); i < 0 {
			return nil
		}
	}
	return s.conns[i]
}

// groupByNode splits the found routes of uids by node. Routes of dead nodes come back for removal; routes of nodes
// that cannot be resolved now are skipped (not delivered this time, but kept) and their uids come back
// as unsure.
func groupByNode(uids []string, found map[string][]routes.Route, resolve func(string) (discovery.Node, nodeState)) (shares []*nodeShare, dead []staleRoute, unsure []string) {
	byNode := map[string]*nodeShare{}
	notLive := map[string]nodeState{} // resolved once per push, not once per route
	for _, uid := range uids {
		for _, r := range found[uid] {
			s, ok := byNode[r.Node]
			if !ok {
				state, known := notLive[r.Node]
				if !known {
					var node discovery.Node
					if node, state = resolve(r.Node); state == nodeLive {
						s = &nodeShare{node: node}
						byNode[r.Node] = s
						shares = append(shares, s)
					} else {
						notLive[r.Node] = state
					}
				}
				switch state {
				case nodeDead:
					dead = append(dead, staleRoute{uid: uid, node: r.Node, connIDs: []string{r.ConnID}})
				case nodeUnknown:
					unsure = append(unsure, uid)
				}
				if s == nil {
					continue
				}
			}
			// A uid's routes come together, so it is new to the share unless it was the last added.
			if n := len(s.uids); n == 0 || s.uids[n-1] != uid {
				s.uids = append(s.uids, uid)
				s.conns = append(s.conns, nil)
			}
			last := len(s.conns) - 1
			s.conns[last] = append(s.conns[last], r.ConnID)
		}
	}
	return shares, dead, unsure
}

// disowned returns the conn ids of routes that the node's answer does not list.
func disowned(routed, held []string) []string {
	var gone []string
	for _, id := range routed {
		if !slices.Contains(held, id) {
			gone = append(gone, id)
		}
	}
	return gone
}
