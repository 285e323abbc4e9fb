package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/heraldpush/herald/pkg/client"
)

// devices are Herald's Go clients as an application would run them: each logs in through auth's
// POST /v1/tokens, acks every push, reconnects by itself, and sends upstream messages now and then.
type devices struct {
	uids    []string
	clients []*client.Client

	mu       sync.Mutex
	received map[string]int // push id → times received, over all devices
	upAcked  []string       // record ids the server acked
	upFailed int            // sends that ended without an ack (only when the run stops them)
}

func newDevices(s *stackInfo, n int, prefix string, logger *slog.Logger) *devices {
	d := &devices{received: map[string]int{}}
	for i := range n {
		uid := fmt.Sprintf("%s-%d", prefix, i)
		d.uids = append(d.uids, uid)
		d.clients = append(d.clients, client.New(client.Config{
			AuthURL:    s.AuthURL,
			APIKey:     s.APIKey,
			UID:        uid,
			Device:     "chaos",
			AutoAck:    true,
			MinBackoff: 100 * time.Millisecond,
			MaxBackoff: time.Second,
			Logger:     logger,
		}))
	}
	return d
}

// run runs every client until ctx ends, recording what arrives, and sends one upstream message per
// device every upEvery (0: none) until upCtx ends.
func (d *devices) run(ctx, upCtx context.Context, upEvery time.Duration) *sync.WaitGroup {
	var wg sync.WaitGroup
	for i, c := range d.clients {
		wg.Go(func() { _ = c.Run(ctx) })
		wg.Go(func() {
			for p := range c.Pushes() {
				d.mu.Lock()
				d.received[p.ID]++
				d.mu.Unlock()
			}
		})
		wg.Go(func() {
			for range c.Errors() {
			}
		})
		wg.Go(func() {
			for range c.Connected() {
			}
		})
		if upEvery > 0 {
			wg.Go(func() { d.sendUp(upCtx, c, i, upEvery) })
		}
	}
	return &wg
}

func (d *devices) sendUp(ctx context.Context, c *client.Client, i int, every time.Duration) {
	// Spread the devices over the interval, so upstream traffic is steady rather than in bursts.
	t := time.NewTimer(every * time.Duration(i%100) / 100)
	defer t.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		data, _ := json.Marshal(map[string]int{"device": i, "n": n})
		id, err := c.Send(ctx, data)
		d.mu.Lock()
		if err != nil {
			d.upFailed++
		} else {
			d.upAcked = append(d.upAcked, id)
		}
		d.mu.Unlock()
		t.Reset(every)
	}
}

func (d *devices) times(id string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.received[id]
}
