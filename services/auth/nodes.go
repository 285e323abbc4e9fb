package main

import (
	"context"
	"sync"

	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/ring"
)

// nodePicker answers "which push-server for this uid" from the latest ZooKeeper view.
type nodePicker struct {
	metrics *metrics
	// discovery reports whether the ZooKeeper view is current, to tell "no node is live" from "we
	// cannot know".
	discovery func(context.Context) error

	// mu guards ring and byID, replaced together on every change.
	mu   sync.RWMutex
	ring *ring.Ring
	byID map[string]discovery.Node
}

func newNodePicker(m *metrics, discoveryCheck func(context.Context) error) *nodePicker {
	return &nodePicker{metrics: m, discovery: discoveryCheck, ring: ring.New(nil), byID: map[string]discovery.Node{}}
}

// update rebuilds the ring from the live nodes; draining nodes take no new logins.
func (p *nodePicker) update(nodes []discovery.Node) {
	members := make([]ring.Member, 0, len(nodes))
	byID := make(map[string]discovery.Node, len(nodes))
	for _, n := range nodes {
		if n.Draining || n.WSURL == "" {
			continue
		}
		members = append(members, ring.Member{ID: n.ID, Weight: n.Weight})
		byID[n.ID] = n
	}
	r := ring.New(members)
	p.mu.Lock()
	p.ring, p.byID = r, byID
	p.mu.Unlock()
	p.metrics.liveNodes.Set(float64(len(members)))
}

// pick returns uid's push-server. failed, when set, is the node the client says just failed it (a
// refused or dropped connection): it is left out for this pick only, so a dead node's users find a
// live one before ZooKeeper's session timeout removes it, and a node that was merely slow for one
// client loses nobody else.
func (p *nodePicker) pick(ctx context.Context, uid, failed string) (discovery.Node, error) {
	p.mu.RLock()
	id, ok := p.ring.GetSkipping(uid, failed)
	node := p.byID[id]
	p.mu.RUnlock()
	if ok {
		return node, nil
	}
	if err := p.discovery(ctx); err != nil {
		return discovery.Node{}, httpapi.Errorf(httpapi.CodeUnavailable, "push-server discovery (zookeeper) is unavailable: %v", err)
	}
	return discovery.Node{}, httpapi.Errorf(httpapi.CodeNoPushServer, "no push-server is available")
}
