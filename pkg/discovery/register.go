package discovery

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// recheckEvery bounds how long a missing znode goes unnoticed even without a session event.
const recheckEvery = 2 * time.Second

// Registration keeps one push-server's ephemeral znode in place for as long as it runs, re-creating it
// after the session it lived in expired.
type Registration struct {
	client *Client
	path   string
	cancel context.CancelFunc
	done   chan struct{}

	// mu guards node.
	mu   sync.Mutex
	node Node
}

// Register creates node's ephemeral znode and keeps it there until Deregister. It returns once the
// znode exists or ctx ends.
func (c *Client) Register(ctx context.Context, node Node) (*Registration, error) {
	if node.ID == "" || path.Base(node.ID) != node.ID {
		return nil, fmt.Errorf("register: bad node id %q", node.ID)
	}
	keepCtx, cancel := context.WithCancel(context.Background())
	r := &Registration{client: c, path: Root + "/" + node.ID, node: node, cancel: cancel, done: make(chan struct{})}
	notify, unsubscribe := c.subscribe()
	first := make(chan struct{})
	go func() {
		defer close(r.done)
		defer unsubscribe()
		r.keep(keepCtx, notify, first)
	}()
	select {
	case <-first:
		return r, nil
	case <-ctx.Done():
		r.cancel()
		<-r.done
		return nil, fmt.Errorf("register %s: %w", node.ID, ctx.Err())
	}
}

func (r *Registration) keep(ctx context.Context, notify <-chan struct{}, first chan struct{}) {
	tick := time.NewTicker(recheckEvery)
	defer tick.Stop()
	for {
		err := r.ensure()
		switch {
		case err == nil && first != nil:
			close(first)
			first = nil
		case err != nil:
			r.client.logger.Warn("push-server znode not in place", "path", r.path, "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-notify:
		case <-tick.C:
		}
	}
}

// ensure makes the znode exist, owned by the current session, with the current data.
func (r *Registration) ensure() error {
	conn := r.client.conn
	if conn.State() != zk.StateHasSession {
		return errors.New("no zookeeper session")
	}
	r.mu.Lock()
	data, err := json.Marshal(r.node)
	r.mu.Unlock()
	if err != nil {
		return err
	}
	have, stat, err := conn.Get(r.path)
	switch {
	case errors.Is(err, zk.ErrNoNode):
		if err := r.client.ensurePath(Root); err != nil {
			return err
		}
		_, err = conn.Create(r.path, data, zk.FlagEphemeral, zk.WorldACL(zk.PermAll))
		if err == nil {
			r.client.logger.Info("push-server registered", "path", r.path)
		}
		return err
	case err != nil:
		return err
	case stat.EphemeralOwner != conn.SessionID():
		// An expired session's znodes are gone already, so another live session holds this id: a second
		// process was started with the same node id. Never take it over; wait for it to go.
		return fmt.Errorf("node id held by another zookeeper session %#x", stat.EphemeralOwner)
	case string(have) != string(data):
		_, err = conn.Set(r.path, data, stat.Version)
		return err
	}
	return nil
}

// SetDraining publishes whether the node is draining; auth leaves draining nodes out of its ring.
func (r *Registration) SetDraining(draining bool) error {
	r.mu.Lock()
	r.node.Draining = draining
	r.mu.Unlock()
	return r.ensure()
}

// Deregister stops keeping the znode and deletes it.
func (r *Registration) Deregister() error {
	r.cancel()
	<-r.done
	err := r.client.conn.Delete(r.path, -1)
	if err != nil && !errors.Is(err, zk.ErrNoNode) {
		return fmt.Errorf("deregister %s: %w", r.path, err)
	}
	return nil
}
