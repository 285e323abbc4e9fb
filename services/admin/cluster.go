package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldpush/herald/pkg/apiclient"
	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/wire"
)

// cluster is the console's view of the push-servers: the live ones from the ZooKeeper watch, their
// internal API (stats, kick, drain, guarded by the internal secret) and the rates computed from
// their counters.
type cluster struct {
	http   *http.Client // for /metrics, which is not behind the secret
	api    *apiclient.NodeClient
	logger *slog.Logger

	// mu guards nodes, samples and rates.
	mu      sync.Mutex
	nodes   []discovery.Node
	samples map[string]counterSample // node id → its last sample
	rates   rates
}

// rates are per-second rates summed over the live push-servers, from the difference of two samples
// of their counters -rate-interval apart.
type rates struct {
	Pushes   float64   `json:"pushes_per_s"`    // push frames written to devices (herald_ws_pushed_total)
	FramesIn float64   `json:"frames_in_per_s"` // messages from devices: pings, acks, upstream (herald_ws_frames_in_total)
	At       time.Time `json:"sampled_at"`
	Known    bool      `json:"-"` // false until two samples were taken
}

type counterSample struct {
	at             time.Time
	pushed, frames float64
}

func newCluster(client *http.Client, secret string, logger *slog.Logger) *cluster {
	return &cluster{http: client, api: apiclient.NewNodeClient(client, secret), logger: logger, samples: map[string]counterSample{}}
}

// update takes a new list from the ZooKeeper watch (sorted by id).
func (c *cluster) update(nodes []discovery.Node) {
	c.mu.Lock()
	c.nodes = nodes
	c.mu.Unlock()
}

// list returns the live push-servers, sorted by id.
func (c *cluster) list() []discovery.Node {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.nodes
}

func (c *cluster) get(id string) (discovery.Node, bool) {
	for _, n := range c.list() {
		if n.ID == id {
			return n, true
		}
	}
	return discovery.Node{}, false
}

// lastTakingLogins reports whether id is the only live push-server not draining.
func (c *cluster) lastTakingLogins(id string) bool {
	for _, n := range c.list() {
		if n.ID != id && !n.Draining {
			return false
		}
	}
	return true
}

// nodeStatus is a push-server as the console shows it: its znode, and its stats unless it did not answer.
type nodeStatus struct {
	discovery.Node
	State string      `json:"state"` // live, draining, unreachable
	Stats *wire.Stats `json:"stats,omitempty"`
	Error string      `json:"error,omitempty"`
}

// status asks every live node for its stats, in parallel.
func (c *cluster) status(ctx context.Context) []nodeStatus {
	nodes := c.list()
	out := make([]nodeStatus, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			st := nodeStatus{Node: n, State: "live"}
			stats, err := c.api.Stats(ctx, n.InternalURL)
			if err != nil {
				st.State, st.Error = "unreachable", err.Error()
			} else {
				st.Stats = &stats
			}
			if n.Draining || (st.Stats != nil && st.Stats.Draining) {
				st.State = "draining"
			}
			out[i] = st
		})
	}
	wg.Wait()
	return out
}

// kickResult is what kicking a user did on one node.
type kickResult struct {
	Node   string `json:"node"`
	Closed int    `json:"closed"`
	Error  string `json:"error,omitempty"`
}

// kick closes uid's connections on every live node (in parallel): a route directory that lags behind
// a reconnect cannot hide one that way.
func (c *cluster) kick(ctx context.Context, uid, reason string) []kickResult {
	nodes := c.list()
	out := make([]kickResult, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			closed, err := c.api.Kick(ctx, n.InternalURL, uid, reason)
			out[i] = kickResult{Node: n.ID, Closed: closed}
			if err != nil {
				out[i].Error = err.Error()
			}
		})
	}
	wg.Wait()
	return out
}

// drain asks the node to drain: it leaves the ring, tells its clients to reconnect, closes them in
// batches, and stays up, drained, until it is undrained or stopped.
func (c *cluster) drain(ctx context.Context, id string, force bool) error {
	n, ok := c.get(id)
	if !ok {
		return httpapi.Errorf(httpapi.CodeNotFound, "no live push-server %q", id)
	}
	if !force && !n.Draining && c.lastTakingLogins(id) {
		return httpapi.Errorf(httpapi.CodeConflict, "%s is the last push-server taking logins: draining it leaves every device without a node and every login answered 503; drain it anyway with force", id)
	}
	if err := c.api.Drain(ctx, n.InternalURL); err != nil {
		return httpapi.Errorf(httpapi.CodeUnavailable, "push-server %s: %v", id, err)
	}
	return nil
}

// undrain puts a draining node back into the ring.
func (c *cluster) undrain(ctx context.Context, id string) error {
	n, ok := c.get(id)
	if !ok {
		return httpapi.Errorf(httpapi.CodeNotFound, "no live push-server %q", id)
	}
	if err := c.api.Undrain(ctx, n.InternalURL); err != nil {
		var nodeErr *apiclient.Error
		if errors.As(err, &nodeErr) && nodeErr.Status == http.StatusConflict {
			return httpapi.Errorf(httpapi.CodeConflict, "%s is not draining", id)
		}
		return httpapi.Errorf(httpapi.CodeUnavailable, "push-server %s: %v", id, err)
	}
	return nil
}

// currentRates returns the latest rates.
func (c *cluster) currentRates() rates {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rates
}

// sampleRates scrapes every live node's /metrics every interval until ctx ends, and turns the
// difference to the previous sample into per-second rates. A node seen for the first time, or whose
// counters went down (it restarted), adds nothing until its next sample.
func (c *cluster) sampleRates(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		c.sampleOnce(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (c *cluster) sampleOnce(ctx context.Context) {
	nodes := c.list()
	fresh := make([]*counterSample, len(nodes))
	var wg sync.WaitGroup
	for i, n := range nodes {
		wg.Go(func() {
			s, err := c.scrape(ctx, n)
			if err != nil {
				c.logger.Debug("scrape push-server metrics", "node", n.ID, "err", err)
				return
			}
			fresh[i] = &s
		})
	}
	wg.Wait()

	c.mu.Lock()
	defer c.mu.Unlock()
	next := make(map[string]counterSample, len(nodes))
	r := rates{At: time.Now().UTC(), Known: true}
	for i, n := range nodes {
		s := fresh[i]
		if s == nil {
			continue
		}
		next[n.ID] = *s
		prev, ok := c.samples[n.ID]
		secs := s.at.Sub(prev.at).Seconds()
		if !ok || secs <= 0 || s.pushed < prev.pushed || s.frames < prev.frames {
			continue
		}
		r.Pushes += (s.pushed - prev.pushed) / secs
		r.FramesIn += (s.frames - prev.frames) / secs
	}
	if len(c.samples) == 0 && len(next) > 0 {
		r.Known = false // a first sample only: no difference yet
	}
	c.samples = next
	c.rates = r
}

func (c *cluster) scrape(ctx context.Context, n discovery.Node) (counterSample, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(n.InternalURL, "/")+"/metrics", nil)
	if err != nil {
		return counterSample{}, err
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := c.http.Do(req)
	if err != nil {
		return counterSample{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return counterSample{}, fmt.Errorf("HTTP %d", resp.StatusCode)
	}
	values := counters(io.LimitReader(resp.Body, 8<<20), "herald_ws_pushed_total", "herald_ws_frames_in_total")
	return counterSample{at: time.Now(), pushed: values["herald_ws_pushed_total"], frames: values["herald_ws_frames_in_total"]}, nil
}

// counters sums the samples of the named metrics in Prometheus' text format, over all label sets.
func counters(r io.Reader, names ...string) map[string]float64 {
	out := make(map[string]float64, len(names))
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		for _, name := range names {
			rest, ok := strings.CutPrefix(line, name)
			if !ok || rest == "" || (rest[0] != ' ' && rest[0] != '{') {
				continue
			}
			if i := strings.LastIndexByte(rest, '}'); i >= 0 {
				rest = rest[i+1:]
			}
			fields := strings.Fields(rest)
			if len(fields) == 0 {
				continue
			}
			if v, err := strconv.ParseFloat(fields[0], 64); err == nil {
				out[name] += v
			}
		}
	}
	return out
}
