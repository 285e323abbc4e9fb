// Package coalesce merges concurrent requests into batches. A request that arrives while earlier
// batches are in flight waits, and goes out together with everything else that arrived meanwhile in
// the next batch. Under light load a batch holds one request and leaves at once, so nothing waits on a
// timer; under heavy load one round trip serves many requests, so the per-call costs (system calls,
// wake-ups, HTTP framing) shrink per request exactly when they matter.
package coalesce

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// ErrFull is returned by Do when the queue already holds Config.MaxQueue requests.
var ErrFull = errors.New("coalesce: queue full")

// ErrClosed is returned by Do for a request that could not be sent because Run has ended.
var ErrClosed = errors.New("coalesce: closed")

// ErrExpired is returned by Do for a request that waited longer than Config.MaxWait for a batch; it
// was not sent.
var ErrExpired = errors.New("coalesce: waited too long for a batch")

// Config bounds a Batcher.
type Config struct {
	// MaxInFlight is how many batches may run at once; further requests queue meanwhile.
	MaxInFlight int
	// MaxWeight bounds the summed weight of one batch. A request heavier than this alone goes alone.
	MaxWeight int
	// MaxQueue bounds the requests waiting for a batch; Do fails fast with ErrFull beyond it.
	MaxQueue int
	// Timeout bounds one batch's run.
	Timeout time.Duration
	// MaxWait is how long a request may wait for a batch (0: Timeout). It is checked when a batch
	// forms, which costs nothing per request where a timer per request would; so a request can wait
	// up to MaxWait plus a batch in flight before it fails with ErrExpired.
	MaxWait time.Duration
}

// RunFunc sends one batch. It returns one result per request, in order, or an error for all of them.
type RunFunc[Req, Res any] func(ctx context.Context, reqs []Req) ([]Res, error)

// Batcher coalesces calls to one RunFunc. Start Run before the first Do; Run only closes the Batcher
// when its context ends.
//
// There is no dispatching goroutine: the callers send the batches themselves (flat combining). A
// caller that finds a free slot and nobody waiting sends its request at once. Otherwise it queues, and
// the caller whose batch finishes takes the queued requests as the next batch and hands it to the
// first of them, which wakes up, sends it in its own goroutine and gets its own answer without a
// second wake-up.
type Batcher[Req, Res any] struct {
	cfg    Config
	weight func(Req) int
	run    RunFunc[Req, Res]

	// mu guards queue, inFlight and closed. While queue is not empty every slot is taken (inFlight is
	// MaxInFlight): a new request queues behind the waiting ones rather than going alone, so batches
	// stay full under load, and every queued request is taken by a batch that is in flight.
	mu       sync.Mutex
	queue    []*call[Req, Res]
	inFlight int
	closed   bool
	batches  sync.WaitGroup // batches in flight, which Run waits for
}

// A call's state moves from pending to exactly one of taken (a batch will answer it) or abandoned (its
// caller gave up first, so no batch may send it).
const (
	pending int32 = iota
	taken
	abandoned
)

type call[Req, Res any] struct {
	req    Req
	queued time.Time
	state  atomic.Int32
	res    Res
	err    error
	// done is closed once res and err are set, or, with lead set, when this caller is to send lead
	// (itself first): the same wake-up either way.
	done chan struct{}
	lead []*call[Req, Res]
}

// New returns a Batcher that sends batches with run. weight gives a request's share of MaxWeight (nil:
// every request weighs 1).
func New[Req, Res any](cfg Config, weight func(Req) int, run RunFunc[Req, Res]) (*Batcher[Req, Res], error) {
	if cfg.MaxInFlight < 1 || cfg.MaxWeight < 1 || cfg.MaxQueue < 1 || cfg.Timeout <= 0 {
		return nil, fmt.Errorf("coalesce: every bound must be positive: %+v", cfg)
	}
	if weight == nil {
		weight = func(Req) int { return 1 }
	}
	if cfg.MaxWait <= 0 {
		cfg.MaxWait = cfg.Timeout
	}
	return &Batcher[Req, Res]{cfg: cfg, weight: weight, run: run}, nil
}

// Do queues req for the next batch and returns its result. When ctx ends before a batch took req, req
// is never sent and Do returns ctx's error; once a batch has taken it, Do waits for that batch, which
// Config.Timeout bounds, so a caller never believes a request was dropped that was in fact sent. A
// request no batch took within Config.MaxWait fails with ErrExpired, so Do returns within about
// MaxWait + Timeout whatever ctx allows.
func (b *Batcher[Req, Res]) Do(ctx context.Context, req Req) (Res, error) {
	var zero Res
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	c := &call[Req, Res]{req: req, queued: time.Now(), done: make(chan struct{})}
	b.mu.Lock()
	switch {
	case b.closed:
		b.mu.Unlock()
		return zero, ErrClosed
	case b.inFlight < b.cfg.MaxInFlight && len(b.queue) == 0:
		b.inFlight++
		b.batches.Add(1)
		b.mu.Unlock()
		c.state.Store(taken)
		b.lead([]*call[Req, Res]{c})
		return c.res, c.err
	case len(b.queue) >= b.cfg.MaxQueue:
		b.mu.Unlock()
		return zero, ErrFull
	}
	b.queue = append(b.queue, c)
	b.mu.Unlock()
	select {
	case <-c.done:
	case <-ctx.Done():
		if c.state.CompareAndSwap(pending, abandoned) {
			return zero, ctx.Err()
		}
		<-c.done
	}
	if c.lead != nil {
		b.lead(c.lead)
	}
	return c.res, c.err
}

// Run waits until ctx ends, then closes the Batcher: requests still queued fail with ErrClosed, new
// ones are refused, and Run returns once every batch in flight is done.
func (b *Batcher[Req, Res]) Run(ctx context.Context) {
	<-ctx.Done()
	b.mu.Lock()
	b.closed = true
	queued := b.queue
	b.queue = nil
	b.mu.Unlock()
	for _, c := range queued {
		if c.state.CompareAndSwap(pending, taken) {
			c.err = ErrClosed
			close(c.done)
		}
	}
	b.batches.Wait()
}

// lead sends batch, whose first call is the caller's own and holds a slot, then hands the slot on with
// the next batch to the first of the queued requests, or frees it when none waits.
func (b *Batcher[Req, Res]) lead(batch []*call[Req, Res]) {
	b.send(batch)
	b.mu.Lock()
	next := b.collect()
	if len(next) == 0 {
		b.inFlight--
		b.mu.Unlock()
		b.batches.Done()
		return
	}
	b.mu.Unlock()
	next[0].lead = next
	close(next[0].done)
}

// collect takes the next batch off the queue: the oldest requests up to MaxWeight (at least one),
// skipping those whose callers gave up and failing those that waited longer than MaxWait. mu is held.
func (b *Batcher[Req, Res]) collect() []*call[Req, Res] {
	var batch []*call[Req, Res]
	w := 0
	now := time.Now()
	i := 0
	for ; i < len(b.queue); i++ {
		c := b.queue[i]
		cw := b.weight(c.req)
		if len(batch) > 0 && w+cw > b.cfg.MaxWeight {
			break
		}
		if !c.state.CompareAndSwap(pending, taken) {
			continue // its caller gave up
		}
		if now.Sub(c.queued) > b.cfg.MaxWait {
			c.err = ErrExpired
			close(c.done)
			continue
		}
		batch = append(batch, c)
		w += cw
	}
	clear(b.queue[:i])
	if i == len(b.queue) {
		// Kept for the next requests, rather than regrown from nothing after every batch; MaxQueue
		// bounds it.
		b.queue = b.queue[:0]
	} else {
		b.queue = b.queue[i:]
	}
	return batch
}

// send runs batch and answers every call of it but the first, the leader's own, which its caller
// reads when send returns.
func (b *Batcher[Req, Res]) send(batch []*call[Req, Res]) {
	reqs := make([]Req, len(batch))
	for i, c := range batch {
		reqs[i] = c.req
	}
	// The batch outlives its callers' contexts: they are waiting for it and Timeout bounds it.
	ctx, cancel := context.WithTimeout(context.Background(), b.cfg.Timeout)
	res, err := b.run(ctx, reqs)
	cancel()
	if err == nil && len(res) != len(reqs) {
		err = fmt.Errorf("coalesce: %d results for %d requests", len(res), len(reqs))
	}
	for i, c := range batch {
		if err != nil {
			c.err = err
		} else {
			c.res = res[i]
		}
		if i > 0 {
			close(c.done)
		}
	}
}
