package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"github.com/heraldpush/herald/tools/internal/stackfile"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/heraldpush/herald/pkg/wire"
)

// node and stack are stack.json's push-server and the whole description (stackfile).
type (
	node  = stackfile.PushServer
	stack = stackfile.Stack
)

// runtimeGauges are the Go runtime figures read from a node's /metrics beside its stats: where the
// resident memory is (heap in use, goroutine stacks, span metadata) and how much of it the runtime
// holds without using (idle, not yet released to the OS).
var runtimeGauges = []string{
	"go_memstats_heap_alloc_bytes",
	"go_memstats_heap_objects",
	"go_memstats_heap_inuse_bytes",
	"go_memstats_heap_idle_bytes",
	"go_memstats_heap_released_bytes",
	"go_memstats_stack_inuse_bytes",
	"go_memstats_mspan_inuse_bytes",
	"go_memstats_other_sys_bytes",
	"go_memstats_gc_sys_bytes",
	"go_memstats_sys_bytes",
	"go_memstats_next_gc_bytes",
	"go_gc_duration_seconds_count",
	"go_threads",
	"process_open_fds",
}

// sample is one look at a node.
type sample struct {
	// After is how long after the last connection opened the sample was taken (0 for "before").
	After   time.Duration      `json:"after_ns"`
	Stats   wire.Stats         `json:"stats"`
	Runtime map[string]float64 `json:"runtime,omitempty"`
	Err     string             `json:"error,omitempty"`
}

// observer reads nodes' stats (internal API, with the shared secret) and runtime gauges (/metrics).
type observer struct {
	hc     *http.Client
	secret string
}

func newObserver(secret string) *observer {
	return &observer{hc: &http.Client{Timeout: 10 * time.Second}, secret: secret}
}

func (o *observer) sample(ctx context.Context, n node, after time.Duration) sample {
	s := sample{After: after}
	st, err := o.stats(ctx, n)
	if err != nil {
		s.Err = err.Error()
		return s
	}
	s.Stats = st
	// The gauges are an extra; a node without /metrics still has its stats.
	s.Runtime, _ = o.runtime(ctx, n)
	return s
}

// stats is GET {internal_url}/internal/v1/stats.
func (o *observer) stats(ctx context.Context, n node) (wire.Stats, error) {
	var st wire.Stats
	body, err := o.get(ctx, strings.TrimRight(n.InternalURL, "/")+wire.PathStats, true)
	if err != nil {
		return st, fmt.Errorf("stats of %s: %w", n.ID, err)
	}
	if err := json.Unmarshal(body, &st); err != nil {
		return st, fmt.Errorf("stats of %s: %w", n.ID, err)
	}
	return st, nil
}

// runtime reads runtimeGauges from GET {internal_url}/metrics.
func (o *observer) runtime(ctx context.Context, n node) (map[string]float64, error) {
	body, err := o.get(ctx, strings.TrimRight(n.InternalURL, "/")+"/metrics", false)
	if err != nil {
		return nil, err
	}
	return parseGauges(strings.NewReader(string(body)), runtimeGauges), nil
}

// metrics reads names from GET {base}/metrics.
func (o *observer) metrics(ctx context.Context, base string, names []string) (map[string]float64, error) {
	body, err := o.get(ctx, strings.TrimRight(base, "/")+"/metrics", false)
	if err != nil {
		return nil, err
	}
	return parseGauges(strings.NewReader(string(body)), names), nil
}

func (o *observer) get(ctx context.Context, url string, secret bool) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if secret {
		req.Header.Set(wire.SecretHeader, o.secret)
	}
	// Uncompressed: a gzip answer would make the node keep a compressor in a pool, and the
	// measurement would show up in what it measures.
	req.Header.Set("Accept-Encoding", "identity")
	resp, err := o.hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: http %d", url, resp.StatusCode)
	}
	return body, nil
}

// parseGauges picks the unlabelled samples named in names out of Prometheus text exposition.
func parseGauges(r io.Reader, names []string) map[string]float64 {
	want := make(map[string]bool, len(names))
	for _, n := range names {
		want[n] = true
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		f := strings.Fields(line)
		if len(f) < 2 || !want[f[0]] {
			continue
		}
		if v, err := strconv.ParseFloat(f[1], 64); err == nil {
			out[f[0]] = v
		}
	}
	return out
}
