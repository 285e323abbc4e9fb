package main

import (
	"context"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/heraldpush/herald/pkg/apiclient"
	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/services/push-route/internal/coalesce"
)

// sendConfig bounds the coalescing of deliveries to one node.
type sendConfig struct {
	MaxBytes int           // estimated body size of one deliver-batch call
	InFlight int           // deliver-batch calls in flight to one node
	Queue    int           // pushes waiting for one node; beyond it they count as not delivered
	Timeout  time.Duration // one call, and a push's wait for one
}

// errSendersStopped is the answer to a push after the senders have stopped (shutdown).
var errSendersStopped = errors.New("node senders stopped")

// nodeSenders holds a deliver-batch queue per push-server. Pushes bound for a node while its earlier
// calls are in flight go together in its next call, so under load one request, one write and one
// wake-up serve many messages. run owns every queue's goroutine.
type nodeSenders struct {
	cfg     sendConfig
	api     nodeAPI
	live    func(id string) bool // whether a node is still in ZooKeeper; queues of gone nodes stop
	metrics *metrics
	starts  chan *nodeSender // to run: a queue to start
	stopped chan struct{}    // closed when run has ended

	mu      sync.Mutex // guards senders
	senders map[string]*nodeSender
}

// nodeSender is one node's deliver-batch queue.
type nodeSender struct {
	node    discovery.Node
	batcher *coalesce.Batcher[wire.DeliverItem, wire.DeliverResponse]
	stop    context.CancelFunc // set by run
}

func newNodeSenders(cfg sendConfig, api nodeAPI, live func(string) bool, m *metrics) *nodeSenders {
	return &nodeSenders{cfg: cfg, api: api, live: live, metrics: m, starts: make(chan *nodeSender), stopped: make(chan struct{}), senders: map[string]*nodeSender{}}
}

// itemBytes bounds an item's share of a deliver-batch body (as apiclient.Encode writes it): its data,
// its uids and the JSON around them. It errs high; it keeps batches under the push-servers' body
// limit. uids and ids are plain characters (pkg/ident); a trace id may need escapes, at most doubling
// it.
func itemBytes(item wire.DeliverItem) int {
	n := 256 + len(item.Message.ID) + len(item.Message.Data) + 2*len(item.TraceID)
	for _, uid := range item.UIDs {
		n += len(uid) + 3
	}
	return n
}

// send queues item for node's next deliver-batch call and returns the node's answer to it. The wait
// for a batch and the call itself are each bounded by the timeout, so a slow node holds a push back
// for at most twice that.
func (s *nodeSenders) send(ctx context.Context, node discovery.Node, item wire.DeliverItem) (wire.DeliverResponse, error) {
	q, err := s.queue(node)
	if err != nil {
		return wire.DeliverResponse{}, err
	}
	resp, err := q.batcher.Do(ctx, item)
	if err == nil && resp.Error != nil {
		err = resp.Error
	}
	return resp, err
}

// queue returns node's queue, starting it on first use (or again when the node's address or encodings
// changed: a node restarted as another version).
func (s *nodeSenders) queue(node discovery.Node) (*nodeSender, error) {
	s.mu.Lock()
	if q, ok := s.senders[node.ID]; ok && q.node.InternalURL == node.InternalURL && slices.Equal(q.node.Encodings, node.Encodings) {
		s.mu.Unlock()
		return q, nil
	}
	q := &nodeSender{node: node}
	// A node says in ZooKeeper which forms it reads; an older one gets an older form.
	form := apiclient.BatchFormFor(node.Encodings, node.InternalURL)
	b, err := coalesce.New(coalesce.Config{
		MaxInFlight: s.cfg.InFlight,
		MaxWeight:   s.cfg.MaxBytes,
		MaxQueue:    s.cfg.Queue,
		Timeout:     s.cfg.Timeout,
	}, itemBytes, func(ctx context.Context, items []wire.DeliverItem) ([]wire.DeliverResponse, error) {
		s.metrics.deliverBatch.Observe(float64(len(items)))
		return s.api.DeliverBatch(ctx, node.InternalURL, form, items)
	})
	if err != nil {
		s.mu.Unlock()
		return nil, err
	}
	q.batcher = b
	// In the map before it runs: pushes queue in it meanwhile, and no second queue starts for the node.
	s.senders[node.ID] = q
	s.mu.Unlock()
	select {
	case s.starts <- q: // run starts it, and stops the one it replaces
		return q, nil
	case <-s.stopped:
		// Never to run: a Run on a done context closes it, so pushes that found it queued fail too.
		done, cancel := context.WithCancel(context.Background())
		cancel()
		q.batcher.Run(done)
		return nil, errSendersStopped
	}
}

// run starts the queues senders ask for, stops the queues of nodes that have left ZooKeeper once a
// minute, and when ctx ends stops them all and waits for their batches in flight.
func (s *nodeSenders) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer func() {
		close(s.stopped)
		wg.Wait()
	}()
	running := map[string]*nodeSender{}
	prune := time.NewTicker(time.Minute)
	defer prune.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case q := <-s.starts:
			if old, ok := running[q.node.ID]; ok {
				old.stop()
			}
			qctx, stop := context.WithCancel(ctx)
			q.stop = stop
			running[q.node.ID] = q
			wg.Go(func() { q.batcher.Run(qctx) })
		case <-prune.C:
			s.mu.Lock()
			for id, q := range running {
				if !s.live(id) {
					q.stop()
					delete(running, id)
					delete(s.senders, id)
				}
			}
			s.mu.Unlock()
		}
	}
}
