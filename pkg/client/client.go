package client

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/heraldpush/herald/pkg/wire"
)

// ErrNotConnected is what Client.Ack returns between connections.
var ErrNotConnected = errors.New("not connected")

// tokenRenewMargin is how long before its expiry a token is replaced by a new login before dialing,
// so a handshake does not race the token's last seconds.
const tokenRenewMargin = 30 * time.Second

// connectedBuffer is the capacity of the Connected channel; see offer.
const connectedBuffer = 16

// Client keeps a connection to Herald up for as long as Run runs, as a device app would, and hands
// the pushes of all its successive connections to one channel.
type Client struct {
	cfg       Config
	log       *slog.Logger
	pushes    chan wire.Push
	errs      chan wire.Error
	rooms     chan wire.RoomFrame
	connected chan wire.Welcome
	ups       *upTable // pending sends, shared by all connections
	running   atomic.Bool
	stopOnce  sync.Once
	stopped   chan struct{} // closed when Run returns

	// mu guards conn, changed and joined.
	mu      sync.Mutex
	conn    *Conn         // the current connection; nil between connections
	changed chan struct{} // closed and replaced whenever conn changes, so sends can wait for one
	joined  []string      // the rooms Join asked for, joined again on every new connection
	// lastSeen is the last message id of each room, for joining again with since.
	lastSeen map[string]string
}

// New returns a client for cfg; nothing happens until Run.
func New(cfg Config) *Client {
	return &Client{
		cfg:       cfg,
		log:       cfg.logger().With("uid", cfg.UID, "device", cfg.Device),
		pushes:    make(chan wire.Push, cfg.pushBuffer()),
		errs:      make(chan wire.Error, errBuffer),
		rooms:     make(chan wire.RoomFrame, cfg.pushBuffer()),
		connected: make(chan wire.Welcome, connectedBuffer),
		ups:       newUpTable(),
		stopped:   make(chan struct{}),
		changed:   make(chan struct{}),
		lastSeen:  map[string]string{},
	}
}

// Pushes delivers the pushes of every connection in the order each server sent them; it is closed
// when Run returns. As with Conn.Pushes nothing is dropped: a consumer that falls behind stops the
// reading, and in time the server disconnects the client as slow (the client then reconnects, and
// pushes with a ttl are replayed if they were not acked).
func (c *Client) Pushes() <-chan wire.Push { return c.pushes }

// Errors delivers the error frames of every connection, except those that answer a pending Send;
// it is closed when Run returns. The oldest is dropped when nobody reads them.
func (c *Client) Errors() <-chan wire.Error { return c.errs }

// Connected delivers the welcome frame of each new connection, so a caller can see which node the
// client landed on; it is closed when Run returns. The oldest is dropped when nobody reads them.
func (c *Client) Connected() <-chan wire.Welcome { return c.connected }

// Ack acks a push on the current connection. Acks are per user and message, not per connection, so
// a push received on an earlier connection may be acked on this one.
func (c *Client) Ack(ctx context.Context, id string) error {
	conn := c.current()
	if conn == nil {
		return ErrNotConnected
	}
	return conn.Ack(ctx, id)
}

func (c *Client) current() *Conn {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.conn
}

func (c *Client) setCurrent(conn *Conn) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.conn = conn
	close(c.changed)
	c.changed = make(chan struct{})
}

// watch returns the current connection, or nil when there is none or it has ended already, and a
// channel closed when that changes.
func (c *Client) watch() (*Conn, <-chan struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn == nil {
		return nil, c.changed
	}
	select {
	case <-c.conn.Done():
		return nil, c.changed // Run clears it soon
	default:
		return c.conn, c.changed
	}
}

func (c *Client) stop() {
	c.stopOnce.Do(func() { close(c.stopped) })
}

// Run connects and stays connected until ctx ends, then closes the connection and returns nil. It
// returns an error only when retrying cannot help: a bad config, an auth answer such as bad
// credentials (4xx other than 408 and 429), or a fixed token (no AuthURL) that the server rejects.
// Run may be called once.
//
// After a plain disconnect the client dials the same node again with the same token. It logs in
// again, so that auth picks a live node, when the node said it is going away (a reconnect frame,
// close 1012 or 1001), when dialing fails (the node may be dead, draining or full), when the token is
// rejected, or when the token is about to expire. Attempts are spaced by full jitter between
// MinBackoff and min(MaxBackoff, MinBackoff·2^n) after n failures in a row, so clients dropped
// together by a dying node do not return together; a connection that lived at least MaxBackoff
// resets n, and a shorter one does not, so a server that accepts and drops at once is not hammered.
func (c *Client) Run(ctx context.Context) error {
	if err := c.cfg.validate(); err != nil {
		c.stop()
		return err
	}
	if !c.running.CompareAndSwap(false, true) {
		return errors.New("client: Run called twice")
	}
	defer func() {
		close(c.pushes)
		close(c.errs)
		close(c.rooms)
		close(c.connected)
		c.stop()
	}()

	lo, hi := c.cfg.backoffBounds()
	sess, haveSess := c.cfg.fixedSession()
	failures := 0
	failedNode := "" // the node the last dial could not reach, named at the next login
	retry := func(extra time.Duration) bool {
		failures++
		wait := max(backoff(lo, hi, failures), extra)
		return sleep(ctx, wait)
	}
	for ctx.Err() == nil {
		if c.cfg.canLogin() && (!haveSess || expiresSoon(sess, time.Now())) {
			s, err := c.login(ctx, failedNode)
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				var apiErr *APIError
				if errors.As(err, &apiErr) && permanent(apiErr.Status) {
					return err
				}
				c.log.Warn("login failed, retrying", "err", err)
				var after time.Duration
				if apiErr != nil {
					after = apiErr.RetryAfter
				}
				if !retry(after) {
					return nil
				}
				continue
			}
			sess, haveSess, failedNode = s, true, ""
		}

		conn, err := dial(ctx, c.cfg, sess, sinks{pushes: c.pushes, errs: c.errs, rooms: c.rooms, ups: c.ups, roomSeen: c.seen})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			var he *HandshakeError
			if errors.As(err, &he) && he.Status == http.StatusUnauthorized && !c.cfg.canLogin() {
				return err
			}
			if c.cfg.canLogin() {
				haveSess = false
				if he == nil || he.Status == 0 {
					// Unreachable, not refused by its answer: the node may be dead, and auth may not
					// know yet. A node that answered (draining, full, a bad token) is not named.
					failedNode = sess.ServerID
				}
			}
			c.log.Warn("dial failed, retrying", "ws_url", sess.WSURL, "err", err)
			if !retry(0) {
				return nil
			}
			continue
		}

		// Announce before the reader starts, so a caller sees the node before its pushes.
		w := conn.Welcome()
		c.log.Info("connected", "node", w.Node, "conn_id", w.ConnID)
		offer(c.connected, w)
		c.setCurrent(conn)
		began := time.Now()
		conn.start()
		go c.rejoin(ctx, conn)
		select {
		case <-conn.Done():
		case <-ctx.Done():
			conn.Close()
			c.setCurrent(nil)
			return nil
		}
		c.setCurrent(nil)
		if time.Since(began) >= hi {
			failures = 0
		}
		if movesOn(conn) && c.cfg.canLogin() {
			haveSess = false
		}
		c.log.Warn("disconnected", "node", w.Node, "err", conn.Err(), "relogin", !haveSess)
		if !retry(0) {
			return nil
		}
	}
	return nil
}

func (c *Client) login(ctx context.Context, failedNode string) (Session, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.dialTimeout())
	defer cancel()
	return c.cfg.session(ctx, failedNode)
}

// movesOn reports whether the server told the client to go elsewhere.
func movesOn(conn *Conn) bool {
	if _, ok := conn.ReconnectFrame(); ok {
		return true
	}
	var ce *CloseError
	return errors.As(conn.Err(), &ce) && (ce.Code == wire.CloseServiceRestart || ce.Code == wire.CloseGoingAway)
}

// permanent reports whether an auth answer with this status will be the same however often it is
// asked: a client error, except a timeout and rate limiting.
func permanent(status int) bool {
	return status >= 400 && status < 500 && status != http.StatusRequestTimeout && status != http.StatusTooManyRequests
}

func expiresSoon(s Session, now time.Time) bool {
	return !s.ExpiresAt.IsZero() && s.ExpiresAt.Sub(now) < tokenRenewMargin
}

// backoff is a delay drawn uniformly from [lo, min(hi, lo·2^n)].
func backoff(lo, hi time.Duration, n int) time.Duration {
	ceil := lo
	for i := 0; i < n && ceil < hi; i++ {
		if ceil > hi/2 {
			ceil = hi
			break
		}
		ceil *= 2
	}
	ceil = min(ceil, hi)
	if ceil <= lo {
		return lo
	}
	return lo + rand.N(ceil-lo+1)
}

// sleep waits for d and reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
