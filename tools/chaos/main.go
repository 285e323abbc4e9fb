// Command chaos measures what a user loses when one part of a running Herald stack fails. It starts
// devices (Herald's Go client: they ack every push, reconnect by themselves and send upstream
// messages), pushes to them at a steady rate, injects one fault, lets the stack recover, and reports
// what every promise came to:
//
//   - lost: pushes with a ttl answered 200 that never reached their device (Herald promises none);
//   - phantom: ttl-0 pushes answered delivered ≥ 1 that never arrived (promised none);
//   - duplicates: pushes received more than once (allowed: delivery is at least once, replays after a
//     fault may repeat what the device had not acked yet);
//   - answers by status and code, ttl-0 pushes delivered to nobody;
//   - upstream messages acked to a device that are missing from admin's archive (promised none);
//   - seconds from the fault until every device is connected and pushes are delivered again.
//
// Run it against the local stack (make run in another terminal); each fault needs a fresh stack's
// worth of quiet, so run one fault per call:
//
//	go run ./tools/chaos -fault kill-push-server
//	go run ./tools/chaos -list
package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"github.com/heraldpush/herald/tools/internal/stackfile"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	_ "github.com/go-sql-driver/mysql"

	"github.com/heraldpush/herald/pkg/config"
)

type options struct {
	stackFile string
	fault     string
	list      bool
	devices   int
	rate      float64
	ttl       int64
	before    time.Duration
	after     time.Duration
	drain     time.Duration
	upEvery   time.Duration
	timeout   time.Duration
	jsonOut   string
	verbose   bool
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) error {
	var o options
	fs := flag.NewFlagSet("chaos", flag.ContinueOnError)
	fs.StringVar(&o.stackFile, "stack", ".herald/stack.json", "the local stack's description, written by make run")
	fs.StringVar(&o.fault, "fault", "kill-push-server", "the fault to inject (-list shows them)")
	fs.BoolVar(&o.list, "list", false, "list the faults and exit")
	fs.IntVar(&o.devices, "devices", 500, "devices (one user each) that ack, reconnect and send upstream")
	fs.Float64Var(&o.rate, "rate", 300, "push API calls per second, one device each, half with a ttl")
	fs.Int64Var(&o.ttl, "ttl", 300, "ttl_s of the pushes that have one")
	fs.DurationVar(&o.before, "before", 10*time.Second, "load before the fault")
	fs.DurationVar(&o.after, "after", 20*time.Second, "load after the fault has been healed")
	fs.DurationVar(&o.drain, "drain", 20*time.Second, "wait after the last push for replays and the archive")
	fs.DurationVar(&o.upEvery, "up-every", 5*time.Second, "each device sends an upstream message this often (0: none)")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "bound of one push API call")
	fs.StringVar(&o.jsonOut, "json", "", "also write the report as JSON to this file")
	fs.BoolVar(&o.verbose, "v", false, "log the clients' connection events")
	if err := config.Parse(fs, args, getenv); err != nil {
		return err
	}
	if o.list {
		for _, f := range faults() {
			fmt.Fprintf(stdout, "%-20s %s\n", f.name, f.what)
		}
		return nil
	}
	f, err := findFault(o.fault)
	if err != nil {
		return err
	}
	if o.devices < 1 || o.rate <= 0 || o.ttl < 1 {
		return errors.New("-devices, -rate and -ttl must be positive")
	}
	s, err := readStack(o.stackFile)
	if err != nil {
		return err
	}
	if f.cluster && !s.RedisCluster {
		return fmt.Errorf("fault %s needs the cluster-shaped stack (make run-cluster, or scripts/chaos.sh, which starts one for cluster- faults)", f.name)
	}
	rep, err := runFault(ctx, o, f, s, stderr)
	if err != nil {
		return err
	}
	rep.print(stdout)
	if o.jsonOut != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(o.jsonOut, append(b, '\n'), 0o644); err != nil {
			return err
		}
	}
	return nil
}

// stackInfo is the running stack's description and where it was read from, for reading its pids
// afresh.
type stackInfo struct {
	stackfile.Stack
	file string

	// mu guards events: what a fault observed while it ran.
	mu     sync.Mutex
	events []string
}

// event records what a fault observed, for the report.
func (s *stackInfo) event(format string, args ...any) {
	s.mu.Lock()
	s.events = append(s.events, fmt.Sprintf(format, args...))
	s.mu.Unlock()
}

func readStack(path string) (*stackInfo, error) {
	st, err := stackfile.Read(path)
	if err != nil {
		return nil, err
	}
	return &stackInfo{Stack: st, file: path}, nil
}

// pid reads the process id of name afresh: the stack rewrites stack.json when it restarts a service.
func (s *stackInfo) pid(name string) (int, error) {
	st, err := stackfile.Read(s.file)
	if err != nil {
		return 0, err
	}
	pid := st.PIDs[name]
	if pid <= 0 {
		return 0, fmt.Errorf("stack.json names no running %s", name)
	}
	return pid, nil
}

func runFault(ctx context.Context, o options, f fault, s *stackInfo, stderr io.Writer) (*report, error) {
	level := slog.LevelError + 1 // quiet: the report says what happened
	if o.verbose {
		level = slog.LevelInfo
	}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	say := func(format string, args ...any) { fmt.Fprintf(stderr, "chaos: "+format+"\n", args...) }

	prefix := fmt.Sprintf("chaos-%d", time.Now().Unix())
	devs := newDevices(s, o.devices, prefix, logger)
	runCtx, stopDevices := context.WithCancel(ctx)
	upCtx, stopUp := context.WithCancel(runCtx)
	wg := devs.run(runCtx, upCtx, o.upEvery)
	defer func() {
		stopUp()
		stopDevices()
		wg.Wait()
	}()

	watch := newConnWatch(s)
	say("%d devices connecting", o.devices)
	if err := watch.waitAll(ctx, o.devices, time.Minute); err != nil {
		return nil, err
	}

	start := time.Now()
	go watch.sample(runCtx, start)
	p := &pusher{api: newPushClient(s), uids: devs.uids, rate: o.rate, ttl: o.ttl, timeout: o.timeout}
	loadCtx, stopLoad := context.WithCancel(runCtx)
	loadDone := make(chan struct{})
	go func() {
		p.run(loadCtx, start)
		close(loadDone)
	}()
	rep := &report{Fault: f.name, What: f.what, Devices: o.devices, Rate: o.rate}
	say("load running; %s in %s", f.name, o.before)
	if !sleep(ctx, o.before) {
		stopLoad()
		return nil, ctx.Err()
	}
	rep.FaultAt = time.Since(start).Seconds()
	var heal func(context.Context) error
	if f.inject != nil {
		var err error
		if heal, err = f.inject(ctx, s); err != nil {
			stopLoad()
			return nil, fmt.Errorf("inject %s: %w", f.name, err)
		}
	}
	say("%s injected", f.name)
	if heal != nil {
		sleep(ctx, f.hold)
		hctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		err := heal(hctx)
		cancel()
		if err != nil {
			stopLoad()
			return nil, fmt.Errorf("heal %s: %w", f.name, err)
		}
		say("%s healed", f.name)
	}
	rep.HealedAt = time.Since(start).Seconds()
	sleep(ctx, o.after)
	stopLoad()
	<-loadDone
	rep.LoadSeconds = time.Since(start).Seconds()
	say("load stopped; waiting %s for replays and the archive", o.drain)
	stopUp()
	sleep(ctx, o.drain)

	rep.addPushes(p.records, devs)
	rep.addRecovery(watch.series(), p.records, o.devices)
	s.mu.Lock()
	rep.Events = slices.Clone(s.events)
	s.mu.Unlock()
	devs.mu.Lock()
	acked := append([]string(nil), devs.upAcked...)
	rep.UpUnknown = devs.upFailed
	devs.mu.Unlock()
	rep.UpAcked = len(acked)
	missing, err := missingFromArchive(ctx, s.MySQLDSN, acked, 30*time.Second)
	if err != nil {
		rep.ArchiveError = err.Error()
	}
	rep.UpMissing = len(missing)
	if len(missing) > 0 {
		rep.UpMissingSample = missing[:min(5, len(missing))]
	}
	return rep, nil
}

// missingFromArchive returns the ids not (yet) in admin's archive, waiting up to wait for the
// archiver to catch up.
func missingFromArchive(ctx context.Context, dsn string, ids []string, wait time.Duration) ([]string, error) {
	if len(ids) == 0 {
		return nil, nil
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return ids, err
	}
	defer db.Close()
	deadline := time.Now().Add(wait)
	missing := ids
	for {
		var still []string
		for i := 0; i < len(missing); i += 500 {
			chunk := missing[i:min(i+500, len(missing))]
			found, err := archived(ctx, db, chunk)
			if err != nil {
				return missing, err
			}
			for _, id := range chunk {
				if !found[id] {
					still = append(still, id)
				}
			}
		}
		missing = still
		if len(missing) == 0 || time.Now().After(deadline) || !sleep(ctx, time.Second) {
			return missing, nil
		}
	}
}

func archived(ctx context.Context, db *sql.DB, ids []string) (map[string]bool, error) {
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	q := "SELECT id FROM upstream_messages WHERE id IN (?" + strings.Repeat(",?", len(ids)-1) + ")"
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	found := map[string]bool{}
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			return nil, err
		}
		found[id] = true
	}
	return found, rows.Err()
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
