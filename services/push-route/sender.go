package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/services/push-route/internal/coalesce"
)

// nodeSender is one node's deliver-batch queue.
type nodeSender struct {
	node    discovery.Node
	batcher *coalesce.Batcher[wire.DeliverItem, wire.DeliverResponse]
	stop    context.CancelFunc
	// single is set once the node has answered 404 to deliver-batch: a push-server older than this
	// push-route, still rolling out. Its pushes then go one call each to the deliver endpoint.
	single atomic.Bool
}

// itemBytes bounds an item's share of a deliver-batch body (as encodeBody writes it): its data, its
// uids and the JSON around them. It errs high; it keeps batches under the push-servers' body limit.
// uids and ids are plain characters (pkg/ident); a trace id may need escapes, at most doubling it.
func itemBytes(item wire.DeliverItem) int {
	n := 256 + len(item.Message.ID) + len(item.Message.Data) + 2*len(item.TraceID)
	for _, uid := range item.UIDs {
		n += len(uid) + 3
	}
	return n
}

// sendTo queues item for node's next deliver-batch call. The wait for a batch and the call itself are
// each bounded by the node timeout, so a slow node holds a push back for at most twice that.
func (d *dispatcher) sendTo(ctx context.Context, node discovery.Node, item wire.DeliverItem) (wire.DeliverResponse, error) {
	s, err := d.sender(node)
	if err != nil {
		return wire.DeliverResponse{}, err
	}
	resp, err := s.batcher.Do(ctx, item)
	if err == nil && len(resp.Results) != len(item.UIDs) && resp.Error == "" {
		err = fmt.Errorf("%d results for %d uids", len(resp.Results), len(item.UIDs))
	}
	return resp, err
}

// sender returns node's queue, starting it on first use (or again when the node's address changed).
func (d *dispatcher) sender(node discovery.Node) (*nodeSender, error) {
	d.mu.RLock()
	s, ok := d.senders[node.ID]
	closed := d.closed
	d.mu.RUnlock()
	switch {
	case closed:
		return nil, coalesce.ErrClosed
	case ok && s.node.InternalURL == node.InternalURL:
		return s, nil
	}

	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return nil, coalesce.ErrClosed
	}
	if s, ok := d.senders[node.ID]; ok {
		if s.node.InternalURL == node.InternalURL {
			return s, nil // started meanwhile
		}
		s.stop()
	}
	s = &nodeSender{node: node}
	b, err := coalesce.New(coalesce.Config{
		MaxInFlight: d.batch.nodeInFlight,
		MaxWeight:   d.batch.maxBytes,
		MaxQueue:    d.batch.nodeQueue,
		Timeout:     d.timeout,
	}, itemBytes, func(ctx context.Context, items []wire.DeliverItem) ([]wire.DeliverResponse, error) {
		return d.deliverBatch(ctx, s, items)
	})
	if err != nil {
		return nil, err
	}
	ctx, stop := context.WithCancel(d.ctx)
	s.batcher, s.stop = b, stop
	d.senders[node.ID] = s
	d.wg.Go(func() { b.Run(ctx) })
	return s, nil
}

// deliverBatch makes one deliver-batch call to s's node.
func (d *dispatcher) deliverBatch(ctx context.Context, s *nodeSender, items []wire.DeliverItem) ([]wire.DeliverResponse, error) {
	if s.single.Load() {
		return d.deliverEach(ctx, s.node, items), nil
	}
	var resp wire.DeliverBatchResponse
	err := d.call(ctx, "", s.node.InternalURL+wire.PathDeliverBatch, wire.DeliverBatchRequest{Items: items}, &resp)
	var status *statusError
	if errors.As(err, &status) && status.status == http.StatusNotFound {
		d.logger.Warn("push-server has no deliver-batch endpoint (older version); delivering one push per call", "node", s.node.ID)
		s.single.Store(true)
		return d.deliverEach(ctx, s.node, items), nil
	}
	if err != nil {
		return nil, err
	}
	d.metrics.deliverBatch.Observe(float64(len(items)))
	return resp.Items, nil
}

// deliverEach sends items one call each to node's single-message deliver endpoint; a failed call
// becomes that item's error.
func (d *dispatcher) deliverEach(ctx context.Context, node discovery.Node, items []wire.DeliverItem) []wire.DeliverResponse {
	out := make([]wire.DeliverResponse, len(items))
	for i, item := range items {
		req := wire.DeliverRequest{Message: item.Message, UIDs: item.UIDs}
		if err := d.call(ctx, item.TraceID, node.InternalURL+wire.PathDeliver, req, &out[i]); err != nil {
			out[i] = wire.DeliverResponse{Error: err.Error()}
		}
	}
	return out
}

// pruneSenders stops the queues of nodes that have left ZooKeeper, once a minute.
func (d *dispatcher) pruneSenders() {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-t.C:
		}
		d.mu.Lock()
		for id, s := range d.senders {
			if _, live := d.nodes.get(id); !live {
				s.stop()
				delete(d.senders, id)
			}
		}
		d.mu.Unlock()
	}
}
