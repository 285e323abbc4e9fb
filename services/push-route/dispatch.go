package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/routes"
	"github.com/heraldpush/herald/pkg/wire"
)

// dispatcher delivers a message to the nodes holding its users: one Redis round trip for all routes,
// one internal call per owning node, all nodes at once. A slow or dead node costs only its own users
// their delivery, bounded by the call timeout.
type dispatcher struct {
	routes  *routes.Store
	nodes   *nodeDirectory
	client  *http.Client
	secret  string
	timeout time.Duration
	logger  *slog.Logger
	metrics *metrics
	stale   chan staleRoutes
}

// staleRoutes are routes naming a node that does not hold those connections (any more).
type staleRoutes struct {
	uid, node string
	connIDs   []string
}

func newDispatcher(store *routes.Store, nodes *nodeDirectory, secret string, timeout time.Duration, logger *slog.Logger, m *metrics) *dispatcher {
	transport := &http.Transport{
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: 256,
		IdleConnTimeout:     90 * time.Second,
	}
	return &dispatcher{
		routes: store, nodes: nodes, secret: secret, timeout: timeout, logger: logger, metrics: m,
		client: &http.Client{Transport: transport, Timeout: timeout},
		stale:  make(chan staleRoutes, 4096),
	}
}

// deliver writes m to every connection of uids and returns how many connections each uid got.
func (d *dispatcher) deliver(ctx context.Context, traceID string, m wire.Message, uids []string) (map[string]int, error) {
	found, err := d.routes.Lookup(ctx, uids)
	if err != nil {
		return nil, err
	}
	// node → uid → the conn ids Redis says that node holds.
	byNode := map[string]map[string][]string{}
	nodes := map[string]discovery.Node{}
	for uid, rs := range found {
		for _, r := range rs {
			node, state := d.nodes.resolve(r.Node)
			switch state {
			case nodeDead:
				d.removeStale(staleRoutes{uid: uid, node: r.Node, connIDs: []string{r.ConnID}})
				d.nodes.sweep(r.Node)
				continue
			case nodeUnknown:
				continue // not delivered this time; the route stays
			}
			nodes[r.Node] = node
			if byNode[r.Node] == nil {
				byNode[r.Node] = map[string][]string{}
			}
			byNode[r.Node][uid] = append(byNode[r.Node][uid], r.ConnID)
		}
	}

	delivered := make(map[string]int, len(uids))
	var mu sync.Mutex
	var wg sync.WaitGroup
	for nodeID, held := range byNode {
		node := nodes[nodeID]
		wg.Go(func() {
			req := wire.DeliverRequest{Message: m, UIDs: make([]string, 0, len(held))}
			for uid := range held {
				req.UIDs = append(req.UIDs, uid)
			}
			var resp wire.DeliverResponse
			if err := d.call(ctx, traceID, node.InternalURL+wire.PathDeliver, req, &resp); err != nil {
				d.metrics.nodeErrors.WithLabelValues(nodeID).Inc()
				d.logger.Warn("deliver to push-server failed", "node", nodeID, "uids", len(req.UIDs), "err", err, "trace_id", traceID)
				return
			}
			mu.Lock()
			for _, res := range resp.Results {
				delivered[res.UID] += res.Delivered
			}
			mu.Unlock()
			for _, res := range resp.Results {
				var gone []string
				for _, id := range held[res.UID] {
					if !slices.Contains(res.ConnIDs, id) {
						gone = append(gone, id)
					}
				}
				if len(gone) > 0 {
					d.removeStale(staleRoutes{uid: res.UID, node: nodeID, connIDs: gone})
				}
			}
		})
	}
	wg.Wait()
	return delivered, nil
}

// broadcast writes m to every connection on every live node and returns how many took it.
func (d *dispatcher) broadcast(ctx context.Context, traceID string, m wire.Message) int {
	var total int
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, node := range d.nodes.all() {
		wg.Go(func() {
			var resp wire.BroadcastResponse
			if err := d.call(ctx, traceID, node.InternalURL+wire.PathBroadcast, wire.BroadcastRequest{Message: m}, &resp); err != nil {
				d.metrics.nodeErrors.WithLabelValues(node.ID).Inc()
				d.logger.Warn("broadcast to push-server failed", "node", node.ID, "err", err, "trace_id", traceID)
				return
			}
			mu.Lock()
			total += resp.Delivered
			mu.Unlock()
		})
	}
	wg.Wait()
	return total
}

func (d *dispatcher) call(ctx context.Context, traceID, url string, body, out any) error {
	b, err := json.Marshal(body)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(wire.SecretHeader, d.secret)
	req.Header.Set(traceHeader, traceID)
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s: HTTP %d", url, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// removeStale queues a compare-and-delete of routes a node disowned. The queue is bounded; a route
// that does not fit is found stale again on the next push to that user.
func (d *dispatcher) removeStale(s staleRoutes) {
	select {
	case d.stale <- s:
	default:
		d.metrics.staleDropped.Inc()
	}
}

// cleanStale runs the queued removals until ctx ends.
func (d *dispatcher) cleanStale(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-d.stale:
			opCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
			n, err := d.routes.RemoveStale(opCtx, s.uid, s.node, s.connIDs)
			cancel()
			if err != nil {
				d.logger.Warn("remove stale routes", "uid", s.uid, "node", s.node, "err", err)
				continue
			}
			d.metrics.staleRemoved.Add(float64(n))
		}
	}
}
