// Command loadgen opens many authenticated WebSocket connections to Herald's push-servers and
// reports how fast they opened and what they cost the servers; in its load modes it then pushes to
// them and measures what arrives.
//
// It reads the local stack's .herald/stack.json, mints a token per connection through auth's POST
// /v1/tokens, and spreads the connections over several worker processes (it re-executes itself with
// -worker; one process may open only so many files) and several loopback source addresses (each has
// its own ephemeral ports). The connections answer the heartbeat the server asks for and otherwise
// stay silent. Before connecting and at chosen times after the last connection opened it reads each
// node's GET /internal/v1/stats and /metrics, and reports resident memory and heap growth per
// connection.
//
//	go run ./tools/loadgen -conns 18000 -node ps-1 -procs 3 -sources 4 -hold 60s
//
// Load modes (-mode; the connections are opened first, as above). push: -callers goroutines call
// push-route's POST /v1/push for -duration with -uids-per-call random connected users each and data
// {"t":<unix ns>}; the workers time each push frame from that stamp to its receipt (same machine, same
// clock). broadcast: -broadcasts calls of POST /v1/broadcast, -interval apart, timed from the call's
// start until each connection has the frame. upstream: every connection sends up frames for
// -duration, at most -window in flight and -up-rate a second; up_acks and error frames are counted
// and timed.
//
//	go run ./tools/loadgen -mode push -conns 10000 -node "" -procs 2 -callers 64 -uids-per-call 1 -duration 20s
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/heraldpush/herald/tools/internal/stackfile"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/heraldpush/herald/pkg/config"
	"github.com/heraldpush/herald/tools/loadgen/internal/proccpu"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
}

// options are loadgen's flags.
type options struct {
	stackFile  string
	conns      int
	procs      int
	maxPerProc int
	sources    int
	sourceBase string
	node       string
	rate       float64
	dialers    int
	minters    int
	hold       time.Duration
	samples    []time.Duration
	uids       int
	uidPrefix  string
	ping       string
	pingEvery  time.Duration
	dialTO     time.Duration
	jsonOut    string
	worker     bool

	// The load modes.
	mode        string
	settle      time.Duration
	duration    time.Duration
	warmup      time.Duration
	drain       time.Duration
	callers     int
	uidsPerCall int
	broadcasts  int
	interval    time.Duration
	window      int
	upRate      float64
	upPad       int
	backoff     time.Duration
	routeIntURL string
	pollWait    time.Duration
	cpuProfile  string
	rooms       int
	roomRate    float64
	roomSize    int
	sampleEvery int
}

func parseOptions(args []string, getenv func(string) string) (options, error) {
	var o options
	var samples string
	fs := flag.NewFlagSet("loadgen", flag.ContinueOnError)
	fs.StringVar(&o.stackFile, "stack", ".herald/stack.json", "the local stack's description (auth_url, api_key, internal_secret, push_servers)")
	fs.IntVar(&o.conns, "conns", 1000, "connections to open")
	fs.IntVar(&o.procs, "procs", 0, "worker processes (0: enough for -max-per-proc each)")
	fs.IntVar(&o.maxPerProc, "max-per-proc", 9000, "connections one worker process holds at most when -procs is 0")
	fs.IntVar(&o.sources, "sources", 4, "loopback source addresses to connect from, starting at -source-base")
	fs.StringVar(&o.sourceBase, "source-base", "127.0.0.2", "first source address")
	fs.StringVar(&o.node, "node", "", "push-server id to connect to (every connection, whichever node auth names); empty: all nodes round-robin; auth: the node auth names")
	fs.Float64Var(&o.rate, "rate", 0, "connects per second over all processes (0: as fast as the -dialers allow)")
	fs.IntVar(&o.dialers, "dialers", 64, "connects in flight per process")
	fs.IntVar(&o.minters, "minters", 8, "token requests in flight per process")
	fs.DurationVar(&o.hold, "hold", 30*time.Second, "how long to keep the connections open after the last one opened (at least until the last sample)")
	fs.StringVar(&samples, "samples", "10s,15s", "when to read the nodes' stats, after the last connection opened (comma-separated durations; the last one gives the per-connection figures)")
	fs.IntVar(&o.uids, "uids", 0, "distinct users (0: one per connection); connection i is user i mod uids")
	fs.StringVar(&o.uidPrefix, "uid-prefix", "lg", "users are <prefix>-<n>")
	fs.StringVar(&o.ping, "ping", "app", `heartbeat: app ({"type":"ping"} frames), ws (WebSocket pings) or none`)
	fs.DurationVar(&o.pingEvery, "ping-every", 0, "heartbeat interval (0: heartbeat_s from the welcome frame)")
	fs.DurationVar(&o.dialTO, "dial-timeout", 10*time.Second, "time for one connect, upgrade and welcome")
	fs.StringVar(&o.jsonOut, "json", "", "also write the report as JSON to this file (-: stdout, the text report then goes to stderr)")
	fs.BoolVar(&o.worker, "worker", false, "internal: run as a worker process (spec and commands on stdin)")
	fs.StringVar(&o.mode, "mode", modeIdle, "idle (hold and sample memory), push, broadcast, upstream or room")
	fs.IntVar(&o.rooms, "rooms", 1, "room: how many rooms the connections are spread over (connection i joins room i mod rooms)")
	fs.Float64Var(&o.roomRate, "room-rate", 200, "room: messages per second published, over all rooms (round-robin)")
	fs.IntVar(&o.roomSize, "room-size", 64, "room: bytes of each message's data")
	fs.IntVar(&o.sampleEvery, "sample-every", 100, "room: every n-th connection decodes its messages exactly (the others count frames and bytes)")
	fs.DurationVar(&o.settle, "settle", 3*time.Second, "load modes: pause between the last connect and the load")
	fs.DurationVar(&o.duration, "duration", 20*time.Second, "push and upstream: the measured window")
	fs.DurationVar(&o.warmup, "warmup", 2*time.Second, "push and upstream: load before the measured window, not counted")
	fs.DurationVar(&o.drain, "drain", 3*time.Second, "load modes: wait after the last send for what is still on its way")
	fs.IntVar(&o.callers, "callers", 64, "push: concurrent push API callers (keep-alive connections)")
	fs.IntVar(&o.uidsPerCall, "uids-per-call", 1, "push: distinct random connected users per call")
	fs.IntVar(&o.broadcasts, "broadcasts", 5, "broadcast: how many broadcasts")
	fs.DurationVar(&o.interval, "interval", 3*time.Second, "broadcast: time between broadcasts")
	fs.IntVar(&o.window, "window", 16, "upstream: up frames in flight per connection")
	fs.Float64Var(&o.upRate, "up-rate", 0, "upstream: up frames per second per connection (0: as fast as the window allows; the server refuses more than its -msg-rate, 20 by default)")
	fs.IntVar(&o.upPad, "up-pad", 32, "upstream: padding characters in each message's data")
	fs.DurationVar(&o.backoff, "backoff", 100*time.Millisecond, "upstream: pause of a connection's sender after a rate_limited error")
	fs.StringVar(&o.cpuProfile, "cpuprofile", "", "write the parent process's CPU profile to this file (to see what the load generator itself costs)")
	fs.DurationVar(&o.pollWait, "poll-wait", 0, "load modes: workers look for frames this often instead of waking for each (receipts stamped up to this late; 0: wake for each)")
	fs.StringVar(&o.routeIntURL, "push-route-internal", "", "push-route's internal URL for its /metrics (default: push_api_url's port + 1000, the local stack's layout)")
	if err := config.Parse(fs, args, getenv); err != nil {
		return o, err
	}
	if o.worker {
		return o, nil
	}
	var err error
	if o.samples, err = parseOffsets(samples); err != nil {
		return o, err
	}
	if o.uids < 0 || o.dialers < 1 || o.minters < 1 || o.rate < 0 {
		return o, errors.New("-uids, -rate must not be negative; -dialers and -minters must be at least 1")
	}
	switch o.mode {
	case modeIdle, modePush, modeBroadcast, modeUpstream, modeRoom:
	default:
		return o, fmt.Errorf("-mode %q: want idle, push, broadcast, upstream or room", o.mode)
	}
	if o.rooms < 1 || o.roomRate <= 0 || o.sampleEvery < 1 {
		return o, errors.New("-rooms and -sample-every must be at least 1, -room-rate positive")
	}
	if o.callers < 1 || o.uidsPerCall < 1 || o.broadcasts < 1 || o.window < 1 || o.upRate < 0 || o.duration <= 0 {
		return o, errors.New("-callers, -uids-per-call, -broadcasts and -window must be at least 1, -duration positive, -up-rate not negative")
	}
	if o.mode != modeIdle && o.uids > 0 {
		return o, errors.New("the load modes want one user per connection: leave -uids at 0")
	}
	if o.procs == 0 {
		o.procs = autoProcs(o.conns, o.maxPerProc)
	}
	// Keep every connection open until the last sample has been read.
	o.hold = max(o.hold, o.samples[len(o.samples)-1]+time.Second)
	return o, nil
}

func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	o, err := parseOptions(args, getenv)
	if err != nil {
		return err
	}
	if o.worker {
		return runWorker(stdin, stdout, getenv)
	}
	if o.mode != modeIdle && getenv("GOGC") == "" {
		// The load generator shares the cores with the servers: less GC work leaves them more.
		debug.SetGCPercent(loadGOGC)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if o.cpuProfile != "" {
		f, err := os.Create(o.cpuProfile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}

	st, err := loadStack(o.stackFile)
	if err != nil {
		return err
	}
	targets, watched, err := chooseNodes(st.PushServers, o.node)
	if err != nil {
		return err
	}
	srcs, err := sourceAddrs(o.sourceBase, o.sources)
	if err != nil {
		return err
	}
	if err := check(o.conns, o.procs, o.sources, machineLimits()); err != nil {
		return err
	}
	if o.uids > 0 && (o.conns+o.uids-1)/o.uids > 16 {
		fmt.Fprintf(stderr, "loadgen: note: %d connections per user; a push-server keeps 16 per user by default and closes older ones\n",
			(o.conns+o.uids-1)/o.uids)
	}

	r := &report{
		Date: time.Now().UTC().Format(time.RFC3339), GoVersion: runtime.Version(), Args: args,
		Conns: o.conns, Procs: o.procs, UIDs: o.uids, Ping: o.ping, Mode: o.mode,
	}
	for _, a := range srcs {
		r.Sources = append(r.Sources, a.String())
	}
	r.Targets = []string{"auth"}
	if targets != nil {
		r.Targets = nil
		for _, n := range targets {
			r.Targets = append(r.Targets, n.ID)
		}
	}
	obs := newObserver(st.InternalSecret)
	for _, n := range watched {
		before := obs.sample(ctx, n, 0)
		if before.Err != "" {
			return fmt.Errorf("before connecting: %s", before.Err)
		}
		r.Nodes = append(r.Nodes, nodeReport{ID: n.ID, Before: before})
	}

	specs := workerSpecs(o, st, targets, r.Sources)
	pool, err := startWorkers(specs, stderr)
	if err != nil {
		return err
	}
	defer pool.kill()

	if err := r.runPhases(ctx, o, st, pool, obs, watched, stderr); err != nil {
		pool.stop(10 * time.Second)
		return err
	}
	r.finish()
	return r.write(o.jsonOut, stdout, stderr)
}

func loadStack(path string) (stack, error) {
	st, err := stackfile.Read(path)
	if err != nil {
		return st, err
	}
	if st.AuthURL == "" || st.APIKey == "" || len(st.PushServers) == 0 {
		return st, fmt.Errorf("%s: auth_url, api_key or push_servers missing", path)
	}
	return st, nil
}

// chooseNodes resolves -node: the nodes connections go to (nil: wherever auth says) and the nodes
// whose stats are read.
func chooseNodes(all []node, want string) (targets, watched []node, err error) {
	switch want {
	case "":
		return all, all, nil
	case "auth":
		return nil, all, nil
	}
	ids := make([]string, len(all))
	for i, n := range all {
		if n.ID == want {
			return []node{n}, []node{n}, nil
		}
		ids[i] = n.ID
	}
	return nil, nil, fmt.Errorf("-node %q: the stack has %s", want, strings.Join(ids, ", "))
}

// machineLimits reads this machine's descriptor limit and ephemeral port range (0 where unknown).
func machineLimits() limits {
	var lim limits
	var rl syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl) == nil && rl.Max < 1<<31 {
		lim.filesPerProc = int(rl.Max)
	}
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			lo, _ := strconv.Atoi(f[0])
			hi, _ := strconv.Atoi(f[1])
			lim.portsPerSource = hi - lo + 1
		}
	}
	return lim
}

func workerSpecs(o options, st stack, targets []node, sources []string) []workerSpec {
	var urls []string
	for _, n := range targets {
		urls = append(urls, n.WSURL)
	}
	shares := splitEven(o.conns, o.procs)
	specs := make([]workerSpec, len(shares))
	for i, sh := range shares {
		specs[i] = workerSpec{
			Index: i, Share: sh, UIDs: o.uids, UIDPrefix: o.uidPrefix,
			AuthURL: st.AuthURL, APIKey: st.APIKey, Targets: urls, Sources: sources,
			Rate: o.rate / float64(len(shares)), Dialers: o.dialers, Minters: o.minters,
			DialTimeout: o.dialTO, Ping: o.ping, PingEvery: o.pingEvery,
			Mode: o.mode, Window: o.window, UpRate: o.upRate, UpPad: o.upPad, Backoff: o.backoff, PollWait: o.pollWait,
			Rooms: o.rooms, RoomPrefix: roomPrefix(o), SampleEvery: o.sampleEvery,
		}
	}
	return specs
}

// roomPrefix names the rooms of a run (room mode): its own, so runs do not share members.
func roomPrefix(o options) string { return o.uidPrefix + "-room" }

// workers are the running worker processes.
type workers struct {
	procs  []*exec.Cmd
	in     []io.WriteCloser
	exited []chan struct{} // closed once a worker's output ended and it was waited for
	evs    chan event
}

func startWorkers(specs []workerSpec, stderr io.Writer) (*workers, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	w := &workers{evs: make(chan event, 1024)}
	for _, spec := range specs {
		// No Pdeathsig: Linux sends it when the forking thread ends, which can be long before this
		// process does (go.dev/issue/27505). A worker stops when its stdin ends instead, and that
		// happens however this process ends.
		cmd := exec.Command(exe, "-worker")
		cmd.Stderr = stderr
		in, err := cmd.StdinPipe()
		if err != nil {
			w.kill()
			return nil, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			w.kill()
			return nil, err
		}
		if err := cmd.Start(); err != nil {
			w.kill()
			return nil, fmt.Errorf("start worker %d: %w", spec.Index, err)
		}
		exited := make(chan struct{})
		w.procs = append(w.procs, cmd)
		w.in = append(w.in, in)
		w.exited = append(w.exited, exited)
		go readEvents(spec.Index, cmd, out, w.evs, exited)
		b, _ := json.Marshal(spec)
		if _, err := in.Write(append(b, '\n')); err != nil {
			w.kill()
			return nil, fmt.Errorf("worker %d: %w", spec.Index, err)
		}
	}
	return w, nil
}

// readEvents passes a worker's events on until its output ends, then waits for it and reports how
// it ended.
func readEvents(index int, cmd *exec.Cmd, out io.Reader, evs chan<- event, exited chan<- struct{}) {
	defer close(exited)
	sc := bufio.NewScanner(out)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	msg := ""
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			msg = fmt.Sprintf("bad event line: %v", err)
			break
		}
		evs <- e
	}
	if err := sc.Err(); err != nil && msg == "" {
		msg = err.Error()
	}
	_, _ = io.Copy(io.Discard, out)
	err := cmd.Wait()
	switch {
	case msg != "":
	case err != nil:
		msg = "exited: " + err.Error()
	default:
		msg = "exited"
	}
	evs <- event{Kind: evExit, Worker: index, Err: msg}
}

func (w *workers) send(cmd string) {
	for _, in := range w.in {
		_, _ = io.WriteString(in, cmd+"\n")
	}
}

// collect waits until every worker has sent an event of kind, handing the others to progress. A
// worker that ends first is an error, unless tolerateExit: its exit event then stands in for kind.
func (w *workers) collect(ctx context.Context, kind string, tolerateExit bool, progress func(event)) ([]event, error) {
	got := make([]event, len(w.procs))
	seen := make([]bool, len(w.procs))
	left := len(w.procs)
	for left > 0 {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case e := <-w.evs:
			if e.Worker < 0 || e.Worker >= len(got) {
				continue
			}
			switch e.Kind {
			case kind:
				if !seen[e.Worker] {
					seen[e.Worker] = true
					got[e.Worker] = e
					left--
				}
			case evExit:
				if !tolerateExit {
					return nil, fmt.Errorf("worker %d stopped before %q: %s", e.Worker, kind, e.Err)
				}
				if !seen[e.Worker] {
					seen[e.Worker] = true
					got[e.Worker] = e
					left--
				}
			default:
				if progress != nil {
					progress(e)
				}
			}
		}
	}
	return got, nil
}

// stop tells the workers to close their connections and waits up to timeout for them to exit.
func (w *workers) stop(timeout time.Duration) {
	w.send(cmdStop)
	for _, in := range w.in {
		in.Close()
	}
	deadline := time.After(timeout)
	for _, done := range w.exited {
		select {
		case <-done:
		case <-deadline:
			w.kill()
			return
		}
	}
}

// kill ends every worker that still runs.
func (w *workers) kill() {
	for i, p := range w.procs {
		select {
		case <-w.exited[i]:
		default:
			_ = p.Process.Kill()
		}
	}
}

// runPhases mints, connects, samples and holds (idle) or runs the load (the other modes), and stops,
// filling r.
func (r *report) runPhases(ctx context.Context, o options, st stack, pool *workers, obs *observer, watched []node, stderr io.Writer) error {
	fmt.Fprintf(stderr, "loadgen: %d worker processes minting %d tokens\n", len(pool.procs), o.conns)
	start := time.Now()
	minted, err := pool.collect(ctx, evMinted, false, nil)
	if err != nil {
		return err
	}
	r.Mint.Seconds = time.Since(start).Seconds()
	for _, e := range minted {
		r.Mint.Done += e.Count
		r.Mint.Failures = addCounts(r.Mint.Failures, e.Failures)
	}
	r.Mint.rate()
	fmt.Fprintf(stderr, "loadgen: %d tokens in %.1fs; connecting\n", r.Mint.Done, r.Mint.Seconds)

	open := make([]int, len(pool.procs))
	lastPrint := time.Now()
	start = time.Now()
	pool.send(cmdConnect)
	connected, err := pool.collect(ctx, evConnected, false, func(e event) {
		if e.Kind != evProgress {
			return
		}
		open[e.Worker] = e.Count
		if time.Since(lastPrint) >= 2*time.Second {
			lastPrint = time.Now()
			total := 0
			for _, n := range open {
				total += n
			}
			fmt.Fprintf(stderr, "loadgen: %6.1fs %d open\n", time.Since(start).Seconds(), total)
		}
	})
	if err != nil {
		return err
	}
	allOpen := time.Now()
	r.Connect.Seconds = allOpen.Sub(start).Seconds()
	var lat []int64
	for _, e := range connected {
		r.Connect.Done += e.Count
		r.Connect.Failures = addCounts(r.Connect.Failures, e.Failures)
		lat = append(lat, e.LatencyUS...)
	}
	r.Connect.rate()
	r.Latency = latencies(lat)
	fmt.Fprintf(stderr, "loadgen: %d open in %.1fs (%.0f/s), failures: %s\n",
		r.Connect.Done, r.Connect.Seconds, r.Connect.PerSecond, formatCounts(r.Connect.Failures))

	if o.mode != modeIdle {
		var open []int
		for _, e := range connected {
			open = append(open, e.Open...)
		}
		if err := r.runLoad(ctx, o, st, pool, obs, watched, open, stderr); err != nil {
			return err
		}
		r.HoldSeconds = time.Since(allOpen).Seconds()
		return r.stopWorkers(ctx, pool, connected, stderr)
	}

	// Idle CPU is read from the first sample to the last, after the connect burst has settled.
	procs := allProcs(st, pool)
	var cpu0 proccpu.Snapshot
	var t0 time.Time
	for k, at := range o.samples {
		if err := sleepUntil(ctx, allOpen.Add(at)); err != nil {
			return err
		}
		switch {
		case k == 0:
			cpu0, t0 = proccpu.Take(procs), time.Now()
		case k == len(o.samples)-1:
			c := proccpu.Between(procs, cpu0, proccpu.Take(procs), time.Since(t0).Seconds(), runtime.NumCPU())
			r.IdleCPU = &c
		}
		for i, n := range watched {
			s := obs.sample(ctx, n, at)
			r.Nodes[i].Samples = append(r.Nodes[i].Samples, s)
			fmt.Fprintf(stderr, "loadgen: +%s %s\n", at, sampleLine(r.Nodes[i].Before, s))
		}
	}
	if err := sleepUntil(ctx, allOpen.Add(o.hold)); err != nil {
		return err
	}
	r.HoldSeconds = time.Since(allOpen).Seconds()
	return r.stopWorkers(ctx, pool, connected, stderr)
}

// stopWorkers tells the workers to close their connections and records what was still open.
func (r *report) stopWorkers(ctx context.Context, pool *workers, connected []event, stderr io.Writer) error {
	pool.send(cmdStop)
	final, err := pool.collect(ctx, evFinal, true, nil)
	if err != nil {
		return err
	}
	for i, e := range final {
		if e.Kind == evExit {
			// Its connections ended with it; when is unknown.
			fmt.Fprintf(stderr, "loadgen: worker %d ended while holding: %s\n", i, e.Err)
			r.Lost = addCounts(r.Lost, map[string]int{"worker_ended": connected[i].Count})
			continue
		}
		r.OpenAtStop += e.Count
		r.Lost = addCounts(r.Lost, e.Lost)
	}
	pool.stop(10 * time.Second)
	return nil
}

func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return ctx.Err()
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-tm.C:
		return nil
	}
}

func latencies(us []int64) latencySummary {
	slices.Sort(us)
	ms := func(v int64) float64 { return float64(v) / 1000 }
	return latencySummary{
		P50: ms(percentile(us, 0.50)), P90: ms(percentile(us, 0.90)),
		P99: ms(percentile(us, 0.99)), Max: ms(percentile(us, 1)),
	}
}
