package main

import (
	"context"
	"errors"
	"sync"
	"time"

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

	// grace is how long an empty list read on a working session is not believed over the last view
	// that had nodes (see update).
	grace time.Duration
	now   func() time.Time

	// mu guards ring, byID, lastRing, lastByID and holdUntil. ring and byID are replaced together.
	mu        sync.RWMutex
	ring      *ring.Ring
	byID      map[string]discovery.Node
	lastRing  *ring.Ring // the last view with nodes, nil when none is kept
	lastByID  map[string]discovery.Node
	holdUntil time.Time // while set, ring is the last view held over an empty list, until then
}

func newNodePicker(m *metrics, discoveryCheck func(context.Context) error, grace time.Duration) *nodePicker {
	return &nodePicker{metrics: m, discovery: discoveryCheck, grace: grace, now: time.Now, ring: ring.New(nil), byID: map[string]discovery.Node{}}
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
	defer p.mu.Unlock()
	// An empty list on a working session is what ZooKeeper shows right after sessions expired (a
	// frozen or restarted ensemble): the push-servers are re-registering, most likely alive. The last
	// view with nodes serves for grace rather than refusing every login meanwhile; a node that is in
	// fact gone is avoided by its clients' failed_node. Without a session (the list published when the
	// session is lost) the view is unknown and pick answers 503, as documented.
	if len(nodes) == 0 && p.lastRing != nil && p.discovery(context.Background()) == nil {
		p.ring, p.byID, p.holdUntil = p.lastRing, p.lastByID, p.now().Add(p.grace)
		return
	}
	switch {
	case len(members) > 0:
		p.lastRing, p.lastByID = r, byID
	case len(nodes) > 0:
		// Only draining nodes: an operator's decision, not an outage; nothing to hold later.
		p.lastRing, p.lastByID = nil, nil
	}
	p.ring, p.byID, p.holdUntil = r, byID, time.Time{}
	p.metrics.liveNodes.Set(float64(len(members)))
}

// expireHold drops a last view held longer than grace: the push-servers did not come back.
func (p *nodePicker) expireHold() {
	p.mu.RLock()
	held := !p.holdUntil.IsZero() && p.now().After(p.holdUntil)
	p.mu.RUnlock()
	if !held {
		return
	}
	p.mu.Lock()
	if !p.holdUntil.IsZero() && p.now().After(p.holdUntil) {
		p.ring, p.byID, p.holdUntil = ring.New(nil), map[string]discovery.Node{}, time.Time{}
		p.lastRing, p.lastByID = nil, nil
		p.metrics.liveNodes.Set(0)
	}
	p.mu.Unlock()
}

// ready fails while no push-server takes logins (none registered, or all draining): every login
// would answer 503 no_push_server, so a load balancer should not send any here. While ZooKeeper
// cannot be read the zookeeper check says so; this one judges only the last view.
func (p *nodePicker) ready(context.Context) error {
	p.expireHold()
	p.mu.RLock()
	n := len(p.byID)
	p.mu.RUnlock()
	if n == 0 {
		return errors.New("no push-server takes logins (none registered, or all draining)")
	}
	return nil
}

// pick returns uid's push-server. failed, when set, is the node the client says just failed it (a
// refused or dropped connection): it is left out for this pick only, so a dead node's users find a
// live one before ZooKeeper's session timeout removes it, and a node that was merely slow for one
// client loses nobody else.
func (p *nodePicker) pick(ctx context.Context, uid, failed string) (discovery.Node, error) {
	p.expireHold()
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
