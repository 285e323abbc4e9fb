package main

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	"github.com/heraldpush/herald/pkg/apiclient"
	"github.com/heraldpush/herald/pkg/wire"
)

// ackSink takes devices' acks: push-route's internal API (apiclient.RouteClient).
type ackSink interface {
	Acks(ctx context.Context, acks []wire.Ack) error
}

var _ ackSink = (*apiclient.RouteClient)(nil)

// ackSenders is how many ack batches may be in flight to push-route at once.
const ackSenders = 4

// ackOptions tunes an ackForwarder; defaultAckOptions holds the values the node runs with.
type ackOptions struct {
	batch      int           // most acks in one request
	linger     time.Duration // how long the first ack of a batch waits for others before it goes
	buffer     int           // most acks held while push-route does not take them; then the oldest go
	minBackoff time.Duration // wait after the first failed batch, doubling per failure in a row
	maxBackoff time.Duration // longest wait between attempts
}

// defaultAckOptions meets DESIGN.md's "acks reach push-route within 1 s of the device sending them"
// with room to spare: a batch leaves at most 100 ms after its first ack. 500 acks (at most 128-byte
// ids and uids) stay far below push-route's 1 MiB body limit. 100,000 buffered acks are about 10 MB.
func defaultAckOptions() ackOptions {
	return ackOptions{batch: 500, linger: 100 * time.Millisecond, buffer: 100_000, minBackoff: 100 * time.Millisecond, maxBackoff: 2 * time.Second}
}

// ackForwarder gathers the acks devices send and posts them to push-route in batches. Devices' read
// workers only append to a bounded buffer (add never touches the network); one dispatcher goroutine
// cuts batches by size or age and up to ackSenders goroutines post them. A batch push-route does not
// take goes back to the front of the buffer and is retried with backoff.
//
// Losing an ack is safe: the message stays pending in push-route and is replayed once more at the
// device's next connect (devices already tell repeats by id). That is why a full buffer drops its
// oldest acks rather than blocking readers or growing without bound.
type ackForwarder struct {
	client  ackSink
	logger  *slog.Logger
	metrics *metrics
	opts    ackOptions
	warns   logLimiter

	wake     chan struct{} // capacity 1: there is something new for the dispatcher to look at
	quit     chan struct{} // closed by flush: the dispatcher stops
	done     chan struct{} // closed when the dispatcher and its senders have returned
	quitOnce sync.Once

	// mu guards the fields below.
	mu       sync.Mutex
	buf      []wire.Ack // unsent acks, oldest first; at most opts.buffer
	oldestAt time.Time  // when the oldest ack in buf arrived; zero while buf is empty
	failures int        // failed batches in a row, for the backoff
	retryAt  time.Time  // no batch leaves before this, after a failure
}

func newAckForwarder(client ackSink, logger *slog.Logger, m *metrics, opts ackOptions) *ackForwarder {
	return &ackForwarder{
		client: client, logger: logger, metrics: m, opts: opts,
		warns: logLimiter{every: 10 * time.Second},
		wake:  make(chan struct{}, 1), quit: make(chan struct{}), done: make(chan struct{}),
	}
}

// add queues one ack. It runs on a read worker, so it only takes a mutex and never waits for I/O.
func (f *ackForwarder) add(a wire.Ack) {
	f.mu.Lock()
	if len(f.buf) >= f.opts.buffer {
		f.buf[0] = wire.Ack{}
		f.buf = f.buf[1:]
		f.metrics.acksDropped.WithLabelValues("buffer_full").Inc()
	}
	if len(f.buf) == 0 {
		f.oldestAt = time.Now()
	}
	f.buf = append(f.buf, a)
	n := len(f.buf)
	f.mu.Unlock()
	// The dispatcher needs to hear only when a batch starts (its linger timer) or fills.
	if n == 1 || n == f.opts.batch {
		f.signal()
	}
}

func (f *ackForwarder) signal() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// buffered is how many acks wait to be sent.
func (f *ackForwarder) buffered() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.buf)
}

// next says whether a batch should leave now and, if not, how long until one may (negative: not until
// an ack arrives).
func (f *ackForwarder) next(now time.Time) (wait time.Duration, ready bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	switch {
	case len(f.buf) == 0:
		return -1, false
	case now.Before(f.retryAt):
		return f.retryAt.Sub(now), false
	case len(f.buf) >= f.opts.batch:
		return 0, true
	}
	due := f.oldestAt.Add(f.opts.linger)
	if now.Before(due) {
		return due.Sub(now), false
	}
	return 0, true
}

// take removes and returns the oldest batch (nil when there is none).
func (f *ackForwarder) take() []wire.Ack {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := min(len(f.buf), f.opts.batch)
	if n == 0 {
		return nil
	}
	batch := slices.Clone(f.buf[:n])
	clear(f.buf[:n])
	f.buf = f.buf[n:]
	if len(f.buf) == 0 {
		f.buf, f.oldestAt = nil, time.Time{} // let a backlog's array go
	}
	// The rest keeps the old oldestAt: those acks have waited as long as the batch, so they leave
	// at once rather than after another linger.
	return batch
}

// retry puts a batch push-route did not take back in front of the buffer and backs off.
func (f *ackForwarder) retry(batch []wire.Ack) {
	f.mu.Lock()
	f.buf = append(batch, f.buf...)
	if over := len(f.buf) - f.opts.buffer; over > 0 {
		clear(f.buf[:over])
		f.buf = f.buf[over:]
		f.metrics.acksDropped.WithLabelValues("buffer_full").Add(float64(over))
	}
	if f.oldestAt.IsZero() {
		f.oldestAt = time.Now()
	}
	f.failures++
	backoff := min(f.opts.maxBackoff, f.opts.minBackoff<<min(f.failures-1, 16))
	// Jitter, so nodes that lost push-route together do not all call it again in the same instant.
	backoff = backoff/2 + rand.N(backoff/2+1)
	f.retryAt = time.Now().Add(backoff)
	f.mu.Unlock()
	f.signal()
}

// recovered ends a streak of failures; it reports whether there was one.
func (f *ackForwarder) recovered() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	was := f.failures > 0
	f.failures, f.retryAt = 0, time.Time{}
	return was
}

// run dispatches batches until ctx ends or flush is called, then waits for the batches in flight.
func (f *ackForwarder) run(ctx context.Context) {
	defer close(f.done)
	sem := make(chan struct{}, ackSenders)
	var inFlight sync.WaitGroup
	defer inFlight.Wait()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		wait, ready := f.next(time.Now())
		if ready {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			case <-f.quit:
				return
			}
			batch := f.take()
			if len(batch) == 0 {
				<-sem
				continue
			}
			inFlight.Go(func() {
				defer func() { <-sem }()
				ctx, cancel := context.WithTimeout(context.Background(), pushRouteCallTimeout)
				defer cancel()
				if err := f.send(ctx, batch); err != nil {
					f.retry(batch)
				}
			})
			continue
		}
		var fire <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			fire = timer.C
		}
		select {
		case <-f.wake:
		case <-fire:
		case <-ctx.Done():
			return
		case <-f.quit:
			return
		}
		timer.Stop()
	}
}

// send posts one batch. It returns an error only when the batch should be tried again; a batch
// push-route refuses as malformed is dropped, since sending it again would fail the same way.
func (f *ackForwarder) send(ctx context.Context, batch []wire.Ack) error {
	err := f.client.Acks(ctx, batch)
	switch {
	case err == nil:
		f.metrics.acksForwarded.Add(float64(len(batch)))
		if f.recovered() {
			f.logger.Info("push-route takes acks again")
		}
		return nil
	case permanent(err):
		f.recovered()
		f.metrics.acksDropped.WithLabelValues("rejected").Add(float64(len(batch)))
		f.logger.Error("push-route refused an ack batch; dropped it", "acks", len(batch), "err", err)
		return nil
	}
	f.metrics.ackBatchesFailed.Inc()
	if ok, held := f.warns.allow(); ok {
		f.logger.Warn("cannot hand acks to push-route; keeping them and retrying", "acks", len(batch), "buffered", f.buffered(), "err", err, "similar_warnings_held", held)
	}
	return err
}

// flush stops the dispatcher and sends what is left, giving up at timeout: it runs at shutdown, after
// the drain closed every connection, so no new acks come. Acks still unsent then are dropped (and
// counted); their messages are replayed once more.
func (f *ackForwarder) flush(timeout time.Duration) {
	deadline := time.Now().Add(timeout)
	f.quitOnce.Do(func() { close(f.quit) })
	select {
	case <-f.done: // batches in flight have finished (each within pushRouteCallTimeout)
	case <-time.After(timeout):
	}
	for {
		batch := f.take()
		if len(batch) == 0 {
			return
		}
		left := time.Until(deadline)
		if left <= 0 {
			n := len(batch) + f.buffered()
			f.metrics.acksDropped.WithLabelValues("shutdown").Add(float64(n))
			f.logger.Warn("acks not handed to push-route before exit; their messages will be replayed again", "acks", n)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), min(left, pushRouteCallTimeout))
		err := f.send(ctx, batch)
		cancel()
		if err != nil {
			f.retry(batch)
			f.mu.Lock()
			pause := time.Until(f.retryAt)
			f.mu.Unlock()
			time.Sleep(max(0, min(pause, time.Until(deadline))))
		}
	}
}
