package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"

	"github.com/go-zookeeper/zk"
)

// Watch calls onChange with the live push-servers (sorted by id) at start and after every change, until
// ctx ends. A znode whose data is not a valid Node is skipped and logged. When the session has been lost
// for longer than the session timeout, the list may hold dead nodes, so onChange gets an empty list until
// the session is back.
func (c *Client) Watch(ctx context.Context, onChange func([]Node)) {
	notify, unsubscribe := c.subscribe()
	defer unsubscribe()
	var last []Node
	publish := func(nodes []Node) {
		if last == nil || !slices.EqualFunc(last, nodes, Node.Equal) {
			last = nodes
			onChange(nodes)
		}
	}
	for ctx.Err() == nil {
		if lost := c.lostFor(); lost > 0 {
			var wait <-chan time.Time
			if lost >= c.sessionTimeout {
				publish([]Node{})
			} else {
				wait = time.After(c.sessionTimeout - lost)
			}
			select {
			case <-ctx.Done():
			case <-notify:
			case <-wait:
			}
			continue
		}
		nodes, changed, stop, err := c.readNodes(ctx)
		if err != nil {
			c.logger.Warn("watch push-servers", "err", err)
			select {
			case <-ctx.Done():
			case <-notify:
			case <-time.After(time.Second):
			}
			continue
		}
		publish(nodes)
		select {
		case <-ctx.Done():
		case <-notify:
		case <-changed:
		}
		stop()
	}
}

// readNodes reads every child of Root and sets watches on the list and on each child's data. The
// returned channel is closed when any of them fires or ctx ends; stop releases the watches' goroutines.
func (c *Client) readNodes(ctx context.Context) (nodes []Node, changed <-chan struct{}, stop func(), err error) {
	children, _, childWatch, err := c.conn.ChildrenW(Root)
	if errors.Is(err, zk.ErrNoNode) {
		if err := c.ensurePath(Root); err != nil {
			return nil, nil, nil, err
		}
		children, _, childWatch, err = c.conn.ChildrenW(Root)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	watches := []<-chan zk.Event{childWatch}
	nodes = make([]Node, 0, len(children))
	for _, child := range children {
		data, _, w, err := c.conn.GetW(Root + "/" + child)
		if errors.Is(err, zk.ErrNoNode) {
			continue // vanished between the two reads; the child watch has fired already
		}
		if err != nil {
			return nil, nil, nil, err
		}
		watches = append(watches, w)
		var n Node
		if err := json.Unmarshal(data, &n); err != nil || n.ID != child {
			c.logger.Warn("ignoring push-server znode with bad data", "znode", child, "err", err)
			continue
		}
		nodes = append(nodes, n)
	}
	sort.Slice(nodes, func(i, j int) bool { return nodes[i].ID < nodes[j].ID })

	// One goroutine per watch, all ended by the first to fire or by stop: the library fires each watch
	// channel once, and a watch that never fires would otherwise pin its goroutine.
	round, cancel := context.WithCancel(ctx)
	for _, w := range watches {
		go func() {
			select {
			case <-w:
				cancel()
			case <-round.Done():
			}
		}()
	}
	return nodes, round.Done(), cancel, nil
}

// Get reads one push-server's znode: ok is false when there is none (the node is not live).
func (c *Client) Get(id string) (n Node, ok bool, err error) {
	data, _, err := c.conn.Get(Root + "/" + id)
	if errors.Is(err, zk.ErrNoNode) {
		return Node{}, false, nil
	}
	if err != nil {
		return Node{}, false, err
	}
	if err := json.Unmarshal(data, &n); err != nil {
		return Node{}, false, fmt.Errorf("znode %s: %w", id, err)
	}
	return n, true, nil
}
