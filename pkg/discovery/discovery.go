// Package discovery is how push-servers announce themselves and how the other services find them:
// one ephemeral ZooKeeper znode per live push-server under Root, holding the node's JSON description.
package discovery

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"sync"
	"time"

	"github.com/go-zookeeper/zk"
)

// Root is the parent of every push-server's znode (DESIGN.md contract).
const Root = "/herald/push-servers"

// Node is a push-server as its znode describes it (the JSON is a public contract).
type Node struct {
	ID          string    `json:"id"`
	WSURL       string    `json:"ws_url"`
	InternalURL string    `json:"internal_url"`
	Weight      int       `json:"weight"`
	Draining    bool      `json:"draining"`
	StartedAt   time.Time `json:"started_at"`
	// Encodings lists the media types besides JSON the node's internal API reads where DESIGN.md
	// allows them (wire.ContentTypeProtobuf for deliver-batch). A node that lists none speaks JSON.
	Encodings []string `json:"encodings,omitempty"`
}

// Equal reports whether n and o say the same of the same node.
func (n Node) Equal(o Node) bool { return reflect.DeepEqual(n, o) }

// Client is one ZooKeeper session, shared by a process's registration and watches. The zk library
// reconnects by itself and opens a new session when the old one expired; Client tells its users when
// the session state changes so they can re-create what a lost session took with it.
type Client struct {
	conn           *zk.Conn
	logger         *slog.Logger
	sessionTimeout time.Duration

	// mu guards subs and lostSince.
	mu        sync.Mutex
	subs      map[chan struct{}]struct{}
	lostSince time.Time // zero while a session is held
}

// Dial opens a session to the comma-separated servers. It does not wait for the session: ZooKeeper
// being down at start is a state the service reports on /readyz, not a reason to exit.
func Dial(servers string, sessionTimeout time.Duration, logger *slog.Logger) (*Client, error) {
	conn, events, err := zk.Connect(strings.Split(servers, ","), sessionTimeout, zk.WithLogger(zkLogger{logger}))
	if err != nil {
		return nil, fmt.Errorf("zookeeper connect: %w", err)
	}
	c := &Client{
		conn:           conn,
		logger:         logger,
		sessionTimeout: sessionTimeout,
		subs:           make(map[chan struct{}]struct{}),
		lostSince:      time.Now(),
	}
	go c.followSession(events)
	return c, nil
}

// Close ends the session; its ephemeral znodes vanish at once.
func (c *Client) Close() { c.conn.Close() }

// Check returns nil while a session is held; it is the service's /readyz check for ZooKeeper.
func (c *Client) Check(context.Context) error {
	if s := c.conn.State(); s != zk.StateHasSession {
		return fmt.Errorf("no session (%s)", s)
	}
	return nil
}

// followSession turns the library's event stream into notifications for subscribers. It ends when the
// library closes the channel on Close.
func (c *Client) followSession(events <-chan zk.Event) {
	for ev := range events {
		if ev.Type != zk.EventSession {
			continue
		}
		c.mu.Lock()
		switch {
		case ev.State == zk.StateHasSession:
			c.lostSince = time.Time{}
		case c.lostSince.IsZero():
			c.lostSince = time.Now()
		}
		for ch := range c.subs {
			select {
			case ch <- struct{}{}:
			default: // a notification is already pending; one is enough
			}
		}
		c.mu.Unlock()
		c.logger.Debug("zookeeper session event", "state", ev.State.String())
	}
}

func (c *Client) subscribe() (<-chan struct{}, func()) {
	ch := make(chan struct{}, 1)
	c.mu.Lock()
	c.subs[ch] = struct{}{}
	c.mu.Unlock()
	return ch, func() {
		c.mu.Lock()
		delete(c.subs, ch)
		c.mu.Unlock()
	}
}

// lostFor is how long the client has been without a session (0 while it has one).
func (c *Client) lostFor() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.lostSince.IsZero() {
		return 0
	}
	return time.Since(c.lostSince)
}

// ensurePath creates path and its parents as persistent znodes where missing.
func (c *Client) ensurePath(path string) error {
	at := ""
	for _, part := range strings.Split(strings.TrimPrefix(path, "/"), "/") {
		at += "/" + part
		_, err := c.conn.Create(at, nil, 0, zk.WorldACL(zk.PermAll))
		if err != nil && !errors.Is(err, zk.ErrNodeExists) {
			return fmt.Errorf("create %s: %w", at, err)
		}
	}
	return nil
}

type zkLogger struct{ l *slog.Logger }

func (z zkLogger) Printf(format string, args ...any) {
	z.l.Debug(fmt.Sprintf(format, args...), "component", "zookeeper")
}
