package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/heraldpush/herald/pkg/wire"
)

// redeliverer keeps the promise of a stored message to a user who is connected right now: when the
// route directory or the user's node failed while it was pushed, the message is handed to the
// dispatcher again every second until a device got it. Without this a connected device would see it
// only at its next connect, which may be hours away (a Redis outage leaves devices connected).
//
// Once the routes can be read again, a user may still have none for a moment (the push-servers
// re-record their routes after Redis lost them), so a message keeps trying for -redeliver-window after
// the first lookup that worked; a user still not reached by then is offline in fact, and gets the
// message from the inbox at the next connect, like any stored message.
type redeliverer struct {
	deliver func(ctx context.Context, traceID string, m wire.Message, uids []string) (map[string]int, []string, error)
	window  time.Duration
	max     int // messages waiting at most; beyond, a failed push waits for its user's next connect
	logger  *slog.Logger
	metrics *metrics

	// mu guards queue.
	mu    sync.Mutex
	queue []*undelivered
}

// undelivered is a stored message some of whose users were not reached.
type undelivered struct {
	msg     wire.Message
	uids    []string
	traceID string
	expires time.Time // the message's ttl ends
	giveUp  time.Time // zero until a lookup worked, then the end of the window
}

func newRedeliverer(deliver func(context.Context, string, wire.Message, []string) (map[string]int, []string, error), window time.Duration, max int, logger *slog.Logger, m *metrics) *redeliverer {
	return &redeliverer{deliver: deliver, window: window, max: max, logger: logger, metrics: m}
}

// add queues m for uids, who were not reached because something failed. ttl is the message's.
func (r *redeliverer) add(m wire.Message, uids []string, traceID string, ttl time.Duration) {
	if len(uids) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.queue) >= r.max {
		r.metrics.redeliveries.WithLabelValues("dropped").Inc()
		return
	}
	r.queue = append(r.queue, &undelivered{msg: m, uids: uids, traceID: traceID, expires: time.UnixMilli(m.TS).Add(ttl)})
}

// waiting is how many messages wait for another try.
func (r *redeliverer) waiting() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.queue)
}

// run tries the waiting messages every interval until ctx ends.
func (r *redeliverer) run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			r.retry(ctx)
		}
	}
}

// retry tries every waiting message once, at most 32 at a time, and keeps those still owed.
func (r *redeliverer) retry(ctx context.Context) {
	r.mu.Lock()
	batch := r.queue
	r.queue = nil
	r.mu.Unlock()
	if len(batch) == 0 {
		return
	}
	keep := make([]bool, len(batch))
	sem := make(chan struct{}, 32)
	var wg sync.WaitGroup
	for i, u := range batch {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			keep[i] = r.try(ctx, u)
		})
	}
	wg.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, u := range batch {
		if keep[i] {
			r.queue = append(r.queue, u)
		}
	}
}

// try delivers u once more and reports whether it is still owed to someone.
func (r *redeliverer) try(ctx context.Context, u *undelivered) bool {
	now := time.Now()
	if now.After(u.expires) || (!u.giveUp.IsZero() && now.After(u.giveUp)) {
		r.metrics.redeliveries.WithLabelValues("given_up").Add(float64(len(u.uids)))
		return false
	}
	delivered, failed, err := r.deliver(ctx, u.traceID, u.msg, u.uids)
	if err != nil {
		return true // the routes still cannot be read; the window has not started
	}
	if u.giveUp.IsZero() {
		u.giveUp = now.Add(r.window)
	}
	stillFailed := make(map[string]bool, len(failed))
	for _, uid := range failed {
		stillFailed[uid] = true
	}
	var left []string
	for _, uid := range u.uids {
		if delivered[uid] > 0 && !stillFailed[uid] {
			r.metrics.redeliveries.WithLabelValues("delivered").Inc()
			continue
		}
		left = append(left, uid)
	}
	if len(left) > 0 {
		r.logger.Debug("redeliver: users not reached yet", "id", u.msg.ID, "uids", len(left), "trace_id", u.traceID)
	}
	u.uids = left
	return len(left) > 0
}
