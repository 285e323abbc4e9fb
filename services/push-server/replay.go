package main

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/heraldpush/herald/pkg/apiclient"
	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/services/push-server/internal/wsconn"
)

const (
	// replayWorkers is how many pending-message calls to push-route one node makes at once.
	replayWorkers = 64
	// replayQueueLen is how many admitted connections may wait for their replay (8 bytes each).
	replayQueueLen = 1 << 16
	// replayCallTimeout bounds one pending call, body included.
	replayCallTimeout = 10 * time.Second
	// replayTick is how often a replay held back by a full write queue tries again.
	replayTick = 20 * time.Millisecond
	// replayStall is how long a held-back replay may make no progress (the client reads nothing)
	// before the node gives up on it; what is left stays pending for the next connect.
	replayStall = 30 * time.Second
	// After replayTripAfter failed pending calls in a row, replays fail at once for replayPause:
	// while push-route is unreachable (a dial may take seconds to time out), calls doomed to fail
	// would otherwise hold every worker and back the queue up into the handshakes.
	replayTripAfter = 5
	replayPause     = time.Second
)

// replayer writes a new connection's pending offline messages (DESIGN.md, Ack and offline): it asks
// push-route for the user's pending list and writes each message, in order, to that connection only.
//
// A connection is queued for replay once it is welcomed and attached, so the handshake never waits
// for push-route. replayWorkers goroutines take connections from the bounded queue, which bounds the
// load a reconnect storm puts on push-route. A queue rather than a goroutine per connection waiting on
// a semaphore, because in a storm of 100,000 reconnects the waiting costs 8 bytes per connection, not
// a goroutine stack. When even the queue is full, the handshake goroutine waits for room (see
// enqueue) rather than skip the replay, which would leave the device without its messages until it
// happens to reconnect.
//
// Writes are paced: a long pending list written at once would overflow the connection's write queue
// and close it as a slow consumer at every connect. Messages that do not fit in half the queue wait in
// a backlog that one pacer goroutine tops up as the client reads.
//
// If push-route cannot be reached, the connection works as usual without its replay; the messages
// stay pending for the next connect. After replayTripAfter failures in a row, replays fail without
// a call for replayPause, so an unreachable push-route does not tie up the workers. A message pushed live while the replay runs may arrive before
// older replayed ones, or twice (live and replayed): devices order and deduplicate by id.
// pendingSource lists a user's pending messages: push-route's internal API (apiclient.RouteClient).
type pendingSource interface {
	Pending(ctx context.Context, uid string) ([]wire.Message, error)
}

var _ pendingSource = (*apiclient.RouteClient)(nil)

type replayer struct {
	client   pendingSource
	logger   *slog.Logger
	metrics  *metrics
	draining func() bool
	warns    logLimiter

	queue   chan *wsconn.Conn
	stopped chan struct{} // closed when run returns: nothing takes from queue any more
	wake    chan struct{} // capacity 1: the backlog got a new entry

	// mu guards the fields below.
	mu         sync.Mutex
	backlog    []*replayBacklog
	failures   int       // failed pending calls in a row
	pauseUntil time.Time // replays fail at once until then
}

// replayBacklog is what is left of one connection's replay.
type replayBacklog struct {
	c        *wsconn.Conn
	frames   [][]byte // push frames' JSON, oldest first
	progress time.Time
}

func newReplayer(client pendingSource, logger *slog.Logger, m *metrics, draining func() bool) *replayer {
	return &replayer{
		client: client, logger: logger, metrics: m, draining: draining,
		warns:   logLimiter{every: 10 * time.Second},
		queue:   make(chan *wsconn.Conn, replayQueueLen),
		stopped: make(chan struct{}),
		wake:    make(chan struct{}, 1),
	}
}

// enqueue asks for c's replay. It runs on c's handshake goroutine, which ends right after; so when
// the queue is full, waiting here holds only that transient goroutine (the connection is already
// open and counted in the hub), and the backlog stays in the queue's bound.
func (r *replayer) enqueue(c *wsconn.Conn) {
	select {
	case r.queue <- c:
		return
	default:
	}
	select {
	case r.queue <- c:
	case <-r.stopped:
	}
}

// waiting is how many connections wait for their replay or for room to write it.
func (r *replayer) waiting() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue) + len(r.backlog)
}

// run replays until ctx ends.
func (r *replayer) run(ctx context.Context) {
	defer close(r.stopped)
	var wg sync.WaitGroup
	for range replayWorkers {
		wg.Go(func() {
			for {
				select {
				case <-ctx.Done():
					return
				case c := <-r.queue:
					r.replay(ctx, c)
				}
			}
		})
	}
	wg.Go(func() { r.pace(ctx) })
	wg.Wait()
}

// replay fetches c's pending messages and writes them.
func (r *replayer) replay(ctx context.Context, c *wsconn.Conn) {
	if c.Closed() || r.draining() {
		return // gone already, or about to be told to reconnect elsewhere
	}
	var msgs []wire.Message
	err := errPushRouteFailing
	if !r.paused() {
		callCtx, cancel := context.WithTimeout(ctx, replayCallTimeout)
		msgs, err = r.client.Pending(callCtx, c.UID)
		cancel()
		if ctx.Err() != nil {
			return // shutting down
		}
		r.record(err)
	}
	if err != nil {
		r.metrics.replayFailures.WithLabelValues("push_route").Inc()
		if ok, held := r.warns.allow(); ok {
			r.logger.Warn("cannot fetch pending messages from push-route; they stay pending for the next connect", "uid", c.UID, "err", err, "similar_warnings_held", held)
		}
		return
	}
	r.metrics.replays.Inc()
	frames := make([][]byte, 0, len(msgs))
	for _, m := range msgs {
		b, err := m.AppendPushFrame(nil)
		if m.ID == "" || err != nil {
			r.metrics.replayFailures.WithLabelValues("invalid_message").Inc()
			r.logger.Warn("push-route sent a pending message without an id or with invalid data; skipped it", "uid", c.UID, "id", m.ID)
			continue
		}
		frames = append(frames, b)
	}
	if rest := r.write(c, frames); len(rest) > 0 {
		r.mu.Lock()
		r.backlog = append(r.backlog, &replayBacklog{c: c, frames: rest, progress: time.Now()})
		r.mu.Unlock()
		select {
		case r.wake <- struct{}{}:
		default:
		}
	}
}

// errPushRouteFailing fails replays without a call while push-route keeps failing.
var errPushRouteFailing = errors.New("push-route failed several calls in a row; not asking for a moment")

func (r *replayer) paused() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return time.Now().Before(r.pauseUntil)
}

// record counts a pending call's outcome and pauses replays after too many failures in a row.
func (r *replayer) record(err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err == nil {
		r.failures = 0
		return
	}
	if r.failures++; r.failures >= replayTripAfter {
		r.failures = 0
		r.pauseUntil = time.Now().Add(replayPause)
	}
}

// write writes frames to c in order while they fit in half its write queue (the other half stays
// for live pushes) and returns those that did not fit. A frame always goes when the queue is empty,
// so one message larger than the budget cannot stall the replay.
func (r *replayer) write(c *wsconn.Conn, frames [][]byte) [][]byte {
	for i, f := range frames {
		queued, limit := c.Queued()
		if queued > 0 && queued+len(f)+14 > limit/2 { // 14: the largest frame header
			return frames[i:]
		}
		if c.WriteFrame(f) != nil {
			return nil // closed: what was not written stays pending in push-route
		}
		r.metrics.replayed.Inc()
	}
	return nil
}

// pace tops up held-back replays as their clients read, until ctx ends.
func (r *replayer) pace(ctx context.Context) {
	t := time.NewTicker(replayTick)
	defer t.Stop()
	for {
		r.mu.Lock()
		idle := len(r.backlog) == 0
		r.mu.Unlock()
		if idle {
			select {
			case <-ctx.Done():
				return
			case <-r.wake:
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		r.mu.Lock()
		work := r.backlog
		r.backlog = nil
		r.mu.Unlock()
		var keep []*replayBacklog
		now := time.Now()
		for _, b := range work {
			if b.c.Closed() {
				continue
			}
			rest := r.write(b.c, b.frames)
			if len(rest) == 0 {
				continue
			}
			if len(rest) < len(b.frames) {
				b.frames, b.progress = rest, now
			} else if now.Sub(b.progress) > replayStall {
				r.metrics.replayFailures.WithLabelValues("stalled").Inc()
				if ok, held := r.warns.allow(); ok {
					r.logger.Warn("client read none of its replayed messages for a while; the rest stays pending for its next connect", "uid", b.c.UID, "left", len(rest), "similar_warnings_held", held)
				}
				continue
			}
			keep = append(keep, b)
		}
		r.mu.Lock()
		r.backlog = append(r.backlog, keep...)
		r.mu.Unlock()
	}
}
