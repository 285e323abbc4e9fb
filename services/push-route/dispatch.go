package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/routes"
	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/services/push-route/internal/coalesce"
)

// dispatcher delivers a message to the nodes holding its users: one Redis round trip for all routes
// (lookup.go), one internal call per owning node (sender.go), all nodes at once. A slow or dead node
// costs only its own users their delivery, after at most twice the node timeout.
//
// Concurrent pushes share those round trips: route lookups that arrive while earlier ones are in
// flight go to Redis together in one pipeline, and the pushes bound for one node while earlier calls
// to it are in flight go to it together in one deliver-batch call (see package coalesce). A lone push
// waits for nothing; under load the per-call costs are spread over many messages.
type dispatcher struct {
	ctx     context.Context // the senders' lifetime
	routes  *routes.Store
	nodes   *nodeDirectory
	client  *http.Client
	secret  string
	timeout time.Duration
	batch   batchConfig
	logger  *slog.Logger
	metrics *metrics
	stale   chan staleRoutes
	lookups *coalesce.Batcher[[]string, lookupResult]

	wg      sync.WaitGroup // running senders
	mu      sync.RWMutex   // guards senders and closed
	senders map[string]*nodeSender
	closed  bool // run has ended: no new senders
}

// batchConfig bounds the coalescing of lookups and deliveries.
type batchConfig struct {
	maxUIDs        int // uids in one Redis pipeline
	maxBytes       int // estimated body size of one deliver-batch call
	nodeInFlight   int // deliver-batch calls in flight to one node
	nodeQueue      int // pushes waiting for one node, and lookups waiting for Redis
	lookupInFlight int // Redis pipelines in flight
}

// staleRoutes are routes naming a node that does not hold those connections (any more).
type staleRoutes struct {
	uid, node string
	connIDs   []string
}

// newDispatcher returns a dispatcher whose queues live until ctx ends; run must be running.
func newDispatcher(ctx context.Context, store *routes.Store, nodes *nodeDirectory, secret string, timeout time.Duration, bc batchConfig, logger *slog.Logger, m *metrics) (*dispatcher, error) {
	transport := &http.Transport{
		MaxIdleConns: 1024,
		// Deliveries use nodeInFlight connections per node; broadcasts and kicks may add a few.
		MaxIdleConnsPerHost: max(2*bc.nodeInFlight, 16),
		IdleConnTimeout:     90 * time.Second,
	}
	d := &dispatcher{
		ctx: ctx, routes: store, nodes: nodes, secret: secret, timeout: timeout, batch: bc, logger: logger, metrics: m,
		client:  &http.Client{Transport: transport, Timeout: timeout},
		stale:   make(chan staleRoutes, 4096),
		senders: map[string]*nodeSender{},
	}
	lookups, err := coalesce.New(coalesce.Config{
		MaxInFlight: bc.lookupInFlight,
		MaxWeight:   bc.maxUIDs,
		MaxQueue:    bc.nodeQueue,
		Timeout:     timeout,
	}, func(uids []string) int { return len(uids) }, d.lookupBatch)
	if err != nil {
		return nil, err
	}
	d.lookups = lookups
	return d, nil
}

// run drives the lookup queue, stale-route removals and the pruning of vanished nodes' queues until
// the dispatcher's context ends, then waits for every node queue to finish.
func (d *dispatcher) run() {
	var wg sync.WaitGroup
	wg.Go(func() { d.lookups.Run(d.ctx) })
	wg.Go(d.cleanStale)
	wg.Go(d.pruneSenders)
	wg.Wait()
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.wg.Wait()
}

// deliver writes m to every connection of uids and returns how many connections each uid got.
func (d *dispatcher) deliver(ctx context.Context, traceID string, m wire.Message, uids []string) (map[string]int, error) {
	res, err := d.lookups.Do(ctx, uids)
	if err == nil {
		err = res.err
	}
	if err != nil {
		return nil, err
	}
	found := res.routes
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
		send := func() {
			item := wire.DeliverItem{Message: m, UIDs: make([]string, 0, len(held)), TraceID: traceID}
			for uid := range held {
				item.UIDs = append(item.UIDs, uid)
			}
			resp, err := d.sendTo(ctx, nodes[nodeID], item)
			if err == nil && resp.Error != "" {
				err = errors.New(resp.Error)
			}
			if err != nil {
				d.metrics.nodeErrors.WithLabelValues(nodeID).Inc()
				d.logger.Warn("deliver to push-server failed", "node", nodeID, "uids", len(item.UIDs), "err", err, "trace_id", traceID)
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
		}
		if len(byNode) == 1 {
			send() // most pushes name users of one node: no goroutine to start and wait for
		} else {
			wg.Go(send)
		}
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
	b, err := encodeBody(body)
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
	if traceID != "" {
		req.Header.Set(traceHeader, traceID)
	}
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return &statusError{url: url, status: resp.StatusCode}
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

// encodeBody encodes an internal request. Without HTML escaping, the push data is copied as it came
// (only compacted), so a body is never larger than the sizes itemBytes adds up.
func encodeBody(body any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(body); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// statusError is a push-server's answer other than 200.
type statusError struct {
	url    string
	status int
}

func (e *statusError) Error() string { return fmt.Sprintf("%s: HTTP %d", e.url, e.status) }

// removeStale queues a compare-and-delete of routes a node disowned. The queue is bounded; a route
// that does not fit is found stale again on the next push to that user.
func (d *dispatcher) removeStale(s staleRoutes) {
	select {
	case d.stale <- s:
	default:
		d.metrics.staleDropped.Inc()
	}
}

// cleanStale runs the queued removals until the dispatcher's context ends.
func (d *dispatcher) cleanStale() {
	ctx := d.ctx
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
