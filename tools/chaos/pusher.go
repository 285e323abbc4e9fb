package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"github.com/heraldpush/herald/pkg/apiclient"
	"github.com/heraldpush/herald/pkg/wire"
)

// pushRecord is one call of POST /v1/push and what it answered.
type pushRecord struct {
	at        time.Duration // since the load began
	ttl       int64
	outcome   string // "200", or the error code and status ("503 unavailable"), or "transport"
	id        string
	delivered int
	stored    bool
}

// pusher calls the push API at a steady rate, one random device per call, alternating ttl pushes
// (which Herald promises never to lose once answered 200) and ttl-0 pushes (delivered to whoever is
// connected, or not at all).
type pusher struct {
	api     *apiclient.PushClient
	uids    []string
	rate    float64
	ttl     int64
	timeout time.Duration

	mu      sync.Mutex
	records []pushRecord
}

// maxInFlight bounds the calls waiting for an answer: enough for every call of a node timeout at
// the default rate, so a call not made is the generator's limit showing, not Herald's.
const maxInFlight = 4096

func (p *pusher) run(ctx context.Context, start time.Time) {
	var wg sync.WaitGroup
	defer wg.Wait()
	sem := make(chan struct{}, maxInFlight)
	tick := time.NewTicker(time.Duration(float64(time.Second) / p.rate))
	defer tick.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		ttl := int64(0)
		if n%2 == 0 {
			ttl = p.ttl
		}
		uid := p.uids[rand.IntN(len(p.uids))]
		select {
		case sem <- struct{}{}:
		default:
			p.add(pushRecord{at: time.Since(start), ttl: ttl, outcome: fmt.Sprintf("not sent (%d calls in flight)", maxInFlight)})
			continue
		}
		wg.Go(func() {
			defer func() { <-sem }()
			p.add(p.push(ctx, start, uid, ttl))
		})
	}
}

func (p *pusher) push(ctx context.Context, start time.Time, uid string, ttl int64) pushRecord {
	at := time.Since(start)
	// The call outlives the run's end by its timeout: an answer on its way still counts.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.timeout)
	defer cancel()
	data, _ := json.Marshal(map[string]any{"chaos": true, "at_ms": at.Milliseconds()})
	resp, err := p.api.Push(cctx, wire.PushRequest{UIDs: []string{uid}, Data: data, TTLS: ttl})
	r := pushRecord{at: at, ttl: ttl}
	var apiErr *apiclient.Error
	switch {
	case err == nil:
		r.outcome = "200"
		r.id = resp.ID
		if len(resp.Results) == 1 {
			r.delivered, r.stored = resp.Results[0].Delivered, resp.Results[0].Stored
		}
	case errors.As(err, &apiErr):
		r.outcome = fmt.Sprintf("%d %s", apiErr.Status, apiErr.Code)
	case errors.Is(err, context.DeadlineExceeded):
		r.outcome = fmt.Sprintf("no answer in %s", p.timeout)
	default:
		r.outcome = "transport error"
	}
	return r
}

func (p *pusher) add(r pushRecord) {
	p.mu.Lock()
	p.records = append(p.records, r)
	p.mu.Unlock()
}

func newPushClient(s *stackInfo) *apiclient.PushClient {
	return apiclient.NewPushClient(&http.Client{Transport: apiclient.NewTransport(256)}, s.PushAPIURL, s.APIKey)
}
