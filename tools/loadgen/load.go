package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/heraldpush/herald/pkg/apiclient"
	"github.com/heraldpush/herald/tools/loadgen/internal/latency"
	"github.com/heraldpush/herald/tools/loadgen/internal/proccpu"
)

// The parent's side of the load modes: it drives the push API (push, broadcast) or tells the workers
// to send (upstream), says which send times count, gathers what the workers received, and reads the
// servers' counters and everyone's CPU time around the measured window.

// loadReport is what a load phase found.
type loadReport struct {
	Mode string `json:"mode"`
	// Conns is the connections open when the load started; Start and End bound the measured window.
	Conns    int       `json:"conns"`
	PollWait float64   `json:"poll_wait_ms"` // workers' -poll-wait: receipts are stamped up to this late
	Start    time.Time `json:"start"`
	Seconds  float64   `json:"seconds"`

	// Receipts: push frames (push, broadcast) or up_acks (upstream) of messages sent in the window,
	// per second of the window, and their send → receipt latency.
	Received  int64      `json:"received"`
	PerSecond float64    `json:"per_second"`
	Latency   latency.MS `json:"latency_ms"`
	Timeline  []int64    `json:"timeline,omitempty"` // receipts by second after the window start

	// Push: the API calls made in the window, what they answered, how long they took.
	Calls         int64          `json:"calls,omitempty"`
	CallsPerSec   float64        `json:"calls_per_second,omitempty"`
	CallErrors    map[string]int `json:"call_errors,omitempty"`
	CallLatency   *latency.MS    `json:"call_latency_ms,omitempty"`
	Delivered     int64          `json:"delivered_by_api,omitempty"` // sum of "delivered" in the answers
	UIDsPerCall   int            `json:"uids_per_call,omitempty"`
	Callers       int            `json:"callers,omitempty"`
	NotDelivered  int64          `json:"not_delivered,omitempty"` // uids asked for that the API did not deliver to
	MissingFrames int64          `json:"missing_frames"`          // delivered by the API, never received

	// Broadcast: one entry per broadcast.
	Broadcasts []broadcastResult `json:"broadcasts,omitempty"`

	// Room: messages published in the window over Rooms rooms, what the members received: every
	// frame and byte, and on the sampled members each message (Received, Latency).
	Rooms          int     `json:"rooms,omitempty"`
	Published      int64   `json:"published,omitempty"`
	RoomFrames     int64   `json:"room_frames,omitempty"`
	RoomBytes      int64   `json:"room_bytes,omitempty"`
	Sampled        int     `json:"sampled,omitempty"`
	SampleExpected int64   `json:"sample_expected,omitempty"` // messages the sampled members should get
	FramesPerConnS float64 `json:"frames_per_conn_per_second,omitempty"`

	// Upstream.
	Window         int            `json:"window,omitempty"`
	UpRate         float64        `json:"up_rate,omitempty"`
	UpSent         int64          `json:"up_sent,omitempty"`
	UpSentInWindow int64          `json:"up_sent_in_window,omitempty"`
	UpErrors       map[string]int `json:"up_errors,omitempty"`

	OutOfWindow int64          `json:"out_of_window"`
	OtherFrames map[string]int `json:"other_frames,omitempty"`
	OpenAfter   int            `json:"open_after"`
	LostDuring  map[string]int `json:"lost_during,omitempty"`

	CPU     proccpu.Report         `json:"cpu"`
	Metrics map[string]metricDelta `json:"metrics,omitempty"` // by node (and push-route)
}

// broadcastResult is one broadcast: the API's answer and when each connection had the frame.
type broadcastResult struct {
	Stamp       int64      `json:"stamp"`
	CallMS      float64    `json:"call_ms"`
	Delivered   int64      `json:"delivered_by_api"`
	Err         string     `json:"error,omitempty"`
	Received    int64      `json:"received"`
	Latency     latency.MS `json:"latency_ms"` // Max is the time to the last client
	Quantiles   []float64  `json:"by_fraction_ms"`
	Missing     int64      `json:"missing"`
	SpreadAfter float64    `json:"last_after_call_ms"` // time-to-last minus the API call's duration
}

// broadcastFractions are the shares of connections whose arrival time each broadcast reports.
var broadcastFractions = []float64{0.01, 0.10, 0.25, 0.50, 0.75, 0.90, 0.99, 1}

// metricDelta is one source's counters before and after the window.
type metricDelta struct {
	Before map[string]float64 `json:"before"`
	After  map[string]float64 `json:"after"`
}

// loadGauges are read from every push-server's /metrics around the window (labelled series by their
// full name, as the exposition writes them).
var loadGauges = []string{
	"go_gc_duration_seconds_count",
	"go_goroutines",
	"go_threads",
	"go_memstats_heap_alloc_bytes",
	"process_cpu_seconds_total",
	"herald_ws_connections",
	"herald_ws_pushed_total",
	"herald_ws_frames_in_total",
	"herald_ws_rate_limited_total",
	"herald_ws_idle_closed_total",
	`herald_upstream_messages_total{outcome="acked"}`,
	`herald_upstream_messages_total{outcome="failed"}`,
	"herald_upstream_paused_total",
	`herald_route_errors_total{kind="unregister_dropped"}`,
	`herald_ws_closed_total{code="1008"}`,
	`herald_ws_closed_total{code="1013"}`,
}

// routeGauges are read from push-route's /metrics.
var routeGauges = []string{
	"go_gc_duration_seconds_count",
	"go_goroutines",
	"go_threads",
	"process_cpu_seconds_total",
	"herald_push_requests_total",
	"herald_push_broadcasts_total",
	"herald_push_deliveries_total",
	"herald_push_stale_routes_removed_total",
	"herald_push_stale_routes_dropped_total",
	`herald_push_node_errors_total{node="ps-1"}`,
	`herald_push_node_errors_total{node="ps-2"}`,
}

// routeInternalURL is push-route's internal base URL: the flag, else the local stack's layout (the
// internal port is 1000 above the public one).
func routeInternalURL(flagValue, pushAPIURL string) (string, error) {
	if flagValue != "" {
		return strings.TrimRight(flagValue, "/"), nil
	}
	u, err := url.Parse(pushAPIURL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("push_api_url %q: not a URL", pushAPIURL)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		return "", fmt.Errorf("push_api_url %q: no port to derive the internal one from; use -push-route-internal", pushAPIURL)
	}
	u.Host = net.JoinHostPort(u.Hostname(), strconv.Itoa(port+1000))
	u.Path = ""
	return strings.TrimRight(u.String(), "/"), nil
}

// runLoad runs the load phase of o.mode over the open connections (global indices), filling r.Load.
func (r *report) runLoad(ctx context.Context, o options, st stack, pool *workers, obs *observer, watched []node, open []int, stderr io.Writer) error {
	if st.PushAPIURL == "" && o.mode != modeUpstream {
		return errors.New("the stack description has no push_api_url")
	}
	lr := &loadReport{Mode: o.mode, Conns: len(open), PollWait: float64(o.pollWait.Microseconds()) / 1000}
	r.Load = lr
	if err := sleepUntil(ctx, time.Now().Add(o.settle)); err != nil {
		return err
	}

	// What is watched: every push-server's and push-route's counters, everyone's CPU time.
	sources := map[string]func() map[string]float64{}
	for _, n := range watched {
		sources[n.ID] = func() map[string]float64 { m, _ := obs.metrics(ctx, n.InternalURL, loadGauges); return m }
	}
	if st.PushAPIURL != "" {
		if ri, err := routeInternalURL(o.routeIntURL, st.PushAPIURL); err == nil {
			sources["push-route"] = func() map[string]float64 { m, _ := obs.metrics(ctx, ri, routeGauges); return m }
		}
	}
	w := &watch{sources: sources, procs: allProcs(st, pool)}

	var err error
	switch o.mode {
	case modePush:
		err = r.runPush(ctx, o, st, pool, w, open, stderr)
	case modeBroadcast:
		err = r.runBroadcast(ctx, o, st, pool, w, stderr)
	case modeUpstream:
		err = r.runUpstream(ctx, o, pool, w, stderr)
	case modeRoom:
		err = r.runRoom(ctx, o, st, pool, w, open, stderr)
	}
	if err != nil {
		return err
	}
	lr.CPU = w.cpu
	lr.Metrics = w.deltas
	return nil
}

// allProcs is every process whose CPU time a run reads: the stack's and the generator's own.
func allProcs(st stack, pool *workers) []proccpu.Proc {
	procs := proccpu.StackProcs(st.PIDs)
	procs = append(procs, proccpu.Proc{Name: "loadgen", PID: os.Getpid(), Mine: true})
	for i, p := range pool.procs {
		procs = append(procs, proccpu.Proc{Name: fmt.Sprintf("loadgen-worker-%d", i), PID: p.Process.Pid, Mine: true})
	}
	return procs
}

// watch takes the counters and CPU times at the window's start and end.
type watch struct {
	sources map[string]func() map[string]float64
	procs   []proccpu.Proc

	t0     time.Time
	cpu0   proccpu.Snapshot
	before map[string]map[string]float64

	cpu    proccpu.Report
	deltas map[string]metricDelta
}

// window takes the counters and CPU times at the measured window's edges while the load runs, then
// waits for the senders (done, when there is something to wait for) and for what is still on its way
// (drain).
func (w *watch) window(ctx context.Context, start, end time.Time, done func(), drain time.Duration) error {
	if err := sleepUntil(ctx, start); err != nil {
		return err
	}
	w.begin()
	if err := sleepUntil(ctx, end); err != nil {
		return err
	}
	w.end()
	if done != nil {
		done()
	}
	return sleepUntil(ctx, time.Now().Add(drain))
}

func (w *watch) begin() {
	w.before = map[string]map[string]float64{}
	for name, read := range w.sources {
		w.before[name] = read()
	}
	w.cpu0 = proccpu.Take(w.procs)
	w.t0 = time.Now()
}

func (w *watch) end() {
	cpu1 := proccpu.Take(w.procs)
	wall := time.Since(w.t0).Seconds()
	w.cpu = proccpu.Between(w.procs, w.cpu0, cpu1, wall, runtime.NumCPU())
	w.deltas = map[string]metricDelta{}
	for name, read := range w.sources {
		w.deltas[name] = metricDelta{Before: w.before[name], After: read()}
	}
}

// gather asks the workers for what they saw and adds it up.
func gather(ctx context.Context, pool *workers) (loadResult, *latency.Hist, map[int64]*latency.Hist, error) {
	pool.send(cmdReport)
	evs, err := pool.collect(ctx, evResult, false, nil)
	if err != nil {
		return loadResult{}, nil, nil, err
	}
	var total loadResult
	lat := latency.New()
	byStamp := map[int64]*latency.Hist{}
	for _, e := range evs {
		if e.Result == nil {
			continue
		}
		total.add(e.Result)
		lat.Merge(e.Result.Latency)
		for k, wh := range e.Result.ByStamp {
			if byStamp[k] == nil {
				byStamp[k] = latency.New()
			}
			byStamp[k].Merge(wh)
		}
	}
	return total, lat, byStamp, nil
}

func sendMeasure(pool *workers, m measureCmd) {
	b, _ := json.Marshal(m)
	pool.send(cmdMeasure + " " + string(b))
}

// apiClient is a keep-alive HTTP client for the push API with room for conns idle connections.
func apiClient(conns int) *http.Client {
	tr := &http.Transport{
		MaxIdleConns: conns * 2, MaxIdleConnsPerHost: conns * 2, MaxConnsPerHost: 0,
		IdleConnTimeout: 90 * time.Second, DisableCompression: true,
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

// apiCall POSTs body to url with the API key and returns the answer's body (in buf) and a failure
// kind ("" on 200).
func apiCall(ctx context.Context, hc *http.Client, url, apiKey string, body []byte, buf *bytes.Buffer) ([]byte, string) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
	if err != nil {
		return nil, "request_error"
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, failureKind("http", err)
	}
	buf.Reset()
	_, err = buf.ReadFrom(io.LimitReader(resp.Body, 4<<20))
	resp.Body.Close()
	if err != nil {
		return nil, failureKind("http_read", err)
	}
	return buf.Bytes(), answerFailure(resp.StatusCode, buf.Bytes())
}

// answerFailure is the failure kind of an answer: "" for 200, else http_<status>[_<error code>].
func answerFailure(status int, body []byte) string {
	if status == http.StatusOK {
		return ""
	}
	kind := "http_" + strconv.Itoa(status)
	if code := apiclient.ParseError(status, body).Code; code != "" {
		kind += "_" + code
	}
	return kind
}

// callStats are one caller's counts over the window.
type callStats struct {
	calls, delivered, asked int64
	errs                    map[string]int
	lat                     *latency.Hist
}

// runPush drives POST /v1/push with o.callers callers for warm-up + duration.
func (r *report) runPush(ctx context.Context, o options, st stack, pool *workers, w *watch, open []int, stderr io.Writer) error {
	lr := r.Load
	lr.Callers, lr.UIDsPerCall = o.callers, o.uidsPerCall
	if len(open) < o.uidsPerCall {
		return fmt.Errorf("%d connections open, fewer than -uids-per-call %d", len(open), o.uidsPerCall)
	}
	uids := make([]string, len(open))
	for i, idx := range open {
		uids[i], _ = identity(o.uidPrefix, idx, 0)
	}
	from := time.Now().Add(200 * time.Millisecond)
	start, end := from.Add(o.warmup), from.Add(o.warmup+o.duration)
	m := measureCmd{From: from.UnixNano(), Start: start.UnixNano(), End: end.UnixNano()}
	sendMeasure(pool, m)
	lr.Start, lr.Seconds = start.UTC(), o.duration.Seconds()
	fmt.Fprintf(stderr, "loadgen: push: %d callers, %d uids per call, over %d connections: %s warm-up, %s measured\n",
		o.callers, o.uidsPerCall, len(uids), o.warmup, o.duration)

	pushURL := strings.TrimRight(st.PushAPIURL, "/") + "/v1/push"
	callers := make([]*rawCaller, o.callers)
	for k := range callers {
		c, err := newRawCaller(pushURL, st.APIKey, 30*time.Second)
		if err != nil {
			return err
		}
		defer c.close()
		callers[k] = c
	}
	stats := make([]callStats, o.callers)
	var wg sync.WaitGroup
	if err := sleepUntil(ctx, from); err != nil {
		return err
	}
	for k := range o.callers {
		wg.Go(func() {
			cs := &stats[k]
			cs.errs, cs.lat = map[string]int{}, latency.New()
			rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), uint64(k)))
			perm := make([]string, len(uids))
			copy(perm, uids)
			var body []byte
			var buf bytes.Buffer
			for ctx.Err() == nil {
				pick := pickRandom(rng, perm, o.uidsPerCall)
				sent := time.Now()
				if !sent.Before(end) {
					return
				}
				body = appendPushBody(body[:0], pick, sent.UnixNano())
				answer, fail := callers[k].post(body, &buf)
				if sent.Before(start) {
					continue
				}
				cs.calls++
				cs.asked += int64(len(pick))
				cs.lat.Record(time.Since(sent).Microseconds())
				if fail != "" {
					cs.errs[fail]++
					continue
				}
				cs.delivered += sumDelivered(answer)
			}
		})
	}
	if err := w.window(ctx, start, end, wg.Wait, o.drain); err != nil {
		return err
	}

	got, lat, _, err := gather(ctx, pool)
	if err != nil {
		return err
	}
	callLat := latency.New()
	for i := range stats {
		cs := &stats[i]
		lr.Calls += cs.calls
		lr.Delivered += cs.delivered
		lr.NotDelivered += cs.asked
		lr.CallErrors = addCounts(lr.CallErrors, cs.errs)
		callLat.Merge(cs.lat)
	}
	lr.NotDelivered = max(0, lr.NotDelivered-lr.Delivered)
	cl := callLat.Summary()
	lr.CallLatency = &cl
	lr.CallsPerSec = float64(lr.Calls) / lr.Seconds
	lr.fill(got, lat)
	lr.MissingFrames = max(0, lr.Delivered-lr.Received)
	return nil
}

// fill copies the workers' totals into the report.
func (lr *loadReport) fill(got loadResult, lat *latency.Hist) {
	lr.Received = got.InWindow
	lr.PerSecond = float64(got.InWindow) / lr.Seconds
	lr.Latency = lat.Summary()
	lr.Timeline = got.PerSecond
	lr.OutOfWindow = got.OutOfWindow
	lr.OtherFrames = got.Frames
	lr.OpenAfter = got.Open
	lr.LostDuring = got.Lost
	lr.UpSent, lr.UpSentInWindow = got.UpSent, got.UpSentInWindow
	lr.UpErrors = got.Errors
}

// pickRandom moves k random elements of perm to its front and returns them (a partial Fisher–Yates
// shuffle: perm stays a permutation of the same elements).
func pickRandom(rng *rand.Rand, perm []string, k int) []string {
	k = min(k, len(perm))
	for i := range k {
		j := i + rng.IntN(len(perm)-i)
		perm[i], perm[j] = perm[j], perm[i]
	}
	return perm[:k]
}

// runBroadcast makes o.broadcasts broadcasts o.interval apart and times their arrival.
func (r *report) runBroadcast(ctx context.Context, o options, st stack, pool *workers, w *watch, stderr io.Writer) error {
	lr := r.Load
	now := time.Now()
	sendMeasure(pool, measureCmd{From: now.UnixNano(), Start: now.UnixNano(), End: now.Add(time.Duration(o.broadcasts+1) * o.interval).UnixNano()})
	hc := apiClient(1)
	defer hc.CloseIdleConnections()
	bURL := strings.TrimRight(st.PushAPIURL, "/") + "/v1/broadcast"
	var buf bytes.Buffer
	// One call first to open the keep-alive connection and verify the key; its frame is not timed.
	if _, fail := apiCall(ctx, hc, bURL, st.APIKey, []byte(`{"data":{"warm":true}}`), &buf); fail != "" {
		return fmt.Errorf("broadcast warm-up call: %s", fail)
	}
	if err := sleepUntil(ctx, time.Now().Add(o.interval)); err != nil {
		return err
	}
	lr.Start = time.Now().UTC()
	w.begin()
	for k := range o.broadcasts {
		if k > 0 {
			if err := sleepUntil(ctx, time.Now().Add(o.interval)); err != nil {
				return err
			}
		}
		t0 := time.Now()
		body := append(append([]byte(`{"data":`), appendStampData(nil, t0.UnixNano())...), '}')
		answer, fail := apiCall(ctx, hc, bURL, st.APIKey, body, &buf)
		b := broadcastResult{Stamp: t0.UnixNano(), CallMS: float64(time.Since(t0).Microseconds()) / 1000, Err: fail}
		if fail == "" {
			b.Delivered = sumDelivered(answer)
		}
		lr.Broadcasts = append(lr.Broadcasts, b)
		fmt.Fprintf(stderr, "loadgen: broadcast %d: call %.1f ms, delivered %d %s\n", k+1, b.CallMS, b.Delivered, fail)
	}
	if err := sleepUntil(ctx, time.Now().Add(o.drain)); err != nil {
		return err
	}
	w.end()
	lr.Seconds = time.Since(lr.Start).Seconds()
	got, _, byStamp, err := gather(ctx, pool)
	if err != nil {
		return err
	}
	all := latency.New()
	for i := range lr.Broadcasts {
		b := &lr.Broadcasts[i]
		h := byStamp[b.Stamp]
		if h == nil {
			h = latency.New()
		}
		all.Merge(h)
		b.Received = h.N()
		b.Latency = h.Summary()
		b.Quantiles = h.CDF(broadcastFractions)
		b.Missing = max(0, int64(lr.Conns)-h.N())
		b.SpreadAfter = b.Latency.Max - b.CallMS
	}
	lr.fill(got, all)
	lr.Received = all.N()
	lr.PerSecond = 0
	lr.Timeline = nil
	return nil
}

// runUpstream has every connection send up frames for warm-up + duration and counts the up_acks.
func (r *report) runUpstream(ctx context.Context, o options, pool *workers, w *watch, stderr io.Writer) error {
	lr := r.Load
	lr.Window, lr.UpRate = o.window, o.upRate
	from := time.Now().Add(200 * time.Millisecond)
	start, end := from.Add(o.warmup), from.Add(o.warmup+o.duration)
	sendMeasure(pool, measureCmd{From: from.UnixNano(), Start: start.UnixNano(), End: end.UnixNano()})
	lr.Start, lr.Seconds = start.UTC(), o.duration.Seconds()
	rate := "as fast as the window allows"
	if o.upRate > 0 {
		rate = fmt.Sprintf("at most %g/s", o.upRate)
	}
	fmt.Fprintf(stderr, "loadgen: upstream: %d connections, window %d, %s each: %s warm-up, %s measured\n",
		lr.Conns, o.window, rate, o.warmup, o.duration)
	if err := w.window(ctx, start, end, nil, o.drain); err != nil {
		return err
	}
	got, lat, _, err := gather(ctx, pool)
	if err != nil {
		return err
	}
	lr.fill(got, lat)
	return nil
}
