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

// Batcher coalesces calls to one RunFunc. Start Run before the first Do.
type Batcher[Req, Res any] struct {
	cfg    Config
	weight func(Req) int
	run    RunFunc[Req, Res]
	queue  chan *call[Req, Res]
	slots  chan struct{}
	closed chan struct{}
	// waiting counts requests queued or held by Run for the next batch. While any wait, a new request
	// queues behind them rather than taking a free slot for itself, so batches stay full under load.
	waiting atomic.Int64
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
	done   chan struct{}
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
	return &Batcher[Req, Res]{
		cfg:    cfg,
		weight: weight,
		run:    run,
		queue:  make(chan *call[Req, Res], cfg.MaxQueue),
		slots:  make(chan struct{}, cfg.MaxInFlight),
		closed: make(chan struct{}),
	}, nil
}

// Do queues req for the next batch and returns its result. When ctx ends before a batch took req, req
// is never sent and Do returns ctx's error; once a batch has taken it, Do waits for that batch, which
// Config.Timeout bounds, so a caller never believes a request was dropped that was in fact sent. A
// request no batch took within Config.MaxWait fails with ErrExpired, so Do returns within about
// MaxWait + Timeout whatever ctx allows.
func (b *Batcher[Req, Res]) Do(ctx context.Context, req Req) (Res, error) {
	c := &call[Req, Res]{req: req, queued: time.Now(), done: make(chan struct{})}
	var zero Res
	select {
	case <-b.closed:
		return zero, ErrClosed
	default:
	}
	// A free slot and nobody waiting: the caller sends its batch of one itself, sparing the hand-offs
	// to the dispatching goroutine and back, which at light load cost more than the call.
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	if b.waiting.Load() == 0 {
		select {
		case b.slots <- struct{}{}:
			b.sendAlone(ctx, c)
			return c.res, c.err
		default:
		}
	}
	b.waiting.Add(1)
	select {
	case b.queue <- c:
	default:
		b.waiting.Add(-1)
		return zero, ErrFull
	}
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		if c.state.CompareAndSwap(pending, abandoned) {
			return zero, ctx.Err()
		}
	case <-b.closed:
		if c.state.CompareAndSwap(pending, abandoned) {
			return zero, ErrClosed
		}
	}
	<-c.done
	return c.res, c.err
}

// Run sends batches until ctx ends, then waits for the batches in flight. Requests still queued then
// fail with ErrClosed.
func (b *Batcher[Req, Res]) Run(ctx context.Context) {
	var wg sync.WaitGroup
	defer func() {
		close(b.closed)
		wg.Wait()
	}()
	var carry *call[Req, Res]
	for {
		first := carry
		carry = nil
		if first == nil {
			select {
			case <-ctx.Done():
				return
			case first = <-b.queue:
			}
		}
		// Waiting for a slot is what lets the queue fill: everything that arrives meanwhile joins.
		select {
		case <-ctx.Done():
			return
		case b.slots <- struct{}{}:
		}
		batch := []*call[Req, Res]{first}
		w := b.weight(first.req)
	collect:
		for w < b.cfg.MaxWeight {
			select {
			case c := <-b.queue:
				cw := b.weight(c.req)
				if w+cw > b.cfg.MaxWeight {
					carry = c
					break collect
				}
				batch = append(batch, c)
				w += cw
			default:
				break collect
			}
		}
		b.waiting.Add(-int64(len(batch)))
		wg.Go(func() {
			defer func() { <-b.slots }()
			b.send(ctx, batch)
		})
	}
}

// sendAlone sends c as a batch of one in the caller's goroutine, holding a slot it already took.
func (b *Batcher[Req, Res]) sendAlone(ctx context.Context, c *call[Req, Res]) {
	defer func() { <-b.slots }()
	b.send(ctx, []*call[Req, Res]{c})
}

func (b *Batcher[Req, Res]) send(ctx context.Context, batch []*call[Req, Res]) {
	mine := batch[:0]
	now := time.Now()
	for _, c := range batch {
		if !c.state.CompareAndSwap(pending, taken) {
			continue // its caller gave up
		}
		if now.Sub(c.queued) > b.cfg.MaxWait {
			c.err = ErrExpired
			close(c.done)
			continue
		}
		mine = append(mine, c)
	}
	if len(mine) == 0 {
		return
	}
	reqs := make([]Req, len(mine))
	for i, c := range mine {
		reqs[i] = c.req
	}
	// The batch outlives a shutdown's cancel: its callers are waiting for it and Timeout bounds it.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), b.cfg.Timeout)
	res, err := b.run(ctx, reqs)
	cancel()
	if err == nil && len(res) != len(reqs) {
		err = fmt.Errorf("coalesce: %d results for %d requests", len(res), len(reqs))
	}
	for i, c := range mine {
		if err != nil {
			c.err = err
		} else {
			c.res = res[i]
		}
		close(c.done)
	}
}
