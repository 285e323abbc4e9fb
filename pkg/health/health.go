// Package health serves the probes every Herald service answers: /healthz (the process is up) and
// /readyz (its dependencies answer, and the body names any that do not).
package health

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldpush/herald/pkg/buildinfo"
	"github.com/heraldpush/herald/pkg/httpapi"
)

// Check probes one dependency. Probe returns nil when the dependency answers.
type Check struct {
	Name  string
	Probe func(ctx context.Context) error
}

// Healthz answers 200 while the process can serve HTTP at all, with the binary's version, so an
// operator can see what runs where.
func Healthz() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok", "version": buildinfo.Version()})
	})
}

// Readyz runs every check in parallel, each bounded by timeout, and answers 200
// {"status":"ready","checks":{name:"ok"}} or 503 with a not_ready error naming the failing checks and the
// same per-check map.
func Readyz(timeout time.Duration, checks ...Check) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		defer cancel()
		results := Run(ctx, checks...)
		var failed []string
		status := map[string]string{}
		for _, c := range checks {
			if err := results[c.Name]; err != nil {
				failed = append(failed, c.Name+": "+err.Error())
				status[c.Name] = "down: " + err.Error()
				continue
			}
			status[c.Name] = "ok"
		}
		if len(failed) == 0 {
			httpapi.WriteJSON(w, http.StatusOK, map[string]any{"status": "ready", "checks": status})
			return
		}
		sort.Strings(failed)
		httpapi.WriteJSON(w, http.StatusServiceUnavailable, map[string]any{
			"error":  map[string]string{"code": httpapi.CodeNotReady, "message": strings.Join(failed, "; ")},
			"checks": status,
		})
	})
}

// Run runs the checks in parallel and returns each one's result by name (nil when it passed).
func Run(ctx context.Context, checks ...Check) map[string]error {
	var mu sync.Mutex
	results := make(map[string]error, len(checks))
	var wg sync.WaitGroup
	for _, c := range checks {
		wg.Go(func() {
			err := c.Probe(ctx)
			if err == nil && ctx.Err() != nil {
				err = ctx.Err()
			}
			mu.Lock()
			results[c.Name] = err
			mu.Unlock()
		})
	}
	wg.Wait()
	return results
}

// collector exports the readiness checks as herald_ready_check{check} (1 passing, 0 failing), run
// at each scrape: what an alert on an unreachable dependency reads.
type collector struct {
	checks  []Check
	timeout time.Duration
	desc    *prometheus.Desc
}

// Collector returns a Prometheus collector of checks, each bounded by timeout at every scrape.
func Collector(timeout time.Duration, checks ...Check) prometheus.Collector {
	return &collector{checks: checks, timeout: timeout, desc: prometheus.NewDesc(
		"herald_ready_check", "Readiness checks by name (redis, mysql, zookeeper, kafka, …): 1 passing, 0 failing, run at each scrape.",
		[]string{"check"}, nil)}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
	defer cancel()
	results := Run(ctx, c.checks...)
	for _, check := range c.checks {
		v := 1.0
		if results[check.Name] != nil {
			v = 0
		}
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, v, check.Name)
	}
}
