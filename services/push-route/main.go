// Command push-route is Herald's push API. A business system names uids and data; push-route stores
// the message first when it has a ttl, finds every connection of those users in Redis in one round
// trip, and hands the message to each owning push-server in one call per node. It also keeps the
// offline inboxes: acked messages are cleared, pending ones replayed when a device connects.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"errors"
	"github.com/heraldpush/herald/pkg/apiclient"
	"github.com/heraldpush/herald/pkg/apikey"
	"github.com/heraldpush/herald/pkg/buildinfo"
	"github.com/heraldpush/herald/pkg/config"
	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/mysqldb"
	"github.com/heraldpush/herald/pkg/routes"
	"github.com/heraldpush/herald/pkg/service"
	"github.com/heraldpush/herald/services/push-route/internal/inbox"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "push-route:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := parseConfig(args, getenv)
	if errors.Is(err, config.ErrVersion) {
		fmt.Fprintln(stdout, "herald-push-route", buildinfo.Version())
		return nil
	}
	if err != nil {
		return err
	}
	logOut, flushLogs := service.BufferLogs(stdout)
	defer flushLogs()
	logger, err := service.NewLogger(logOut, cfg.LogLevel)
	if err != nil {
		return err
	}
	logger = logger.With("service", "push-route")
	// Its heap is a few MiB of requests in flight and caches: GC work, not memory, is what a lower
	// target would cost (BENCHMARKS.md). GOGC in the environment still wins.
	if getenv("GOGC") == "" {
		debug.SetGCPercent(cfg.GCPercent)
	}

	// Up without MySQL: /readyz says so, stored pushes answer 503, until it answers and is migrated.
	db, mysqlReady, err := mysqldb.Start(ctx, cfg.MySQLDSN, logger)
	if err != nil {
		return err
	}
	defer db.Close()
	store := inbox.NewStore(db)
	store.IdempotencyWindow = cfg.IdempotencyTTL
	store.Timeout = cfg.MySQLTimeout

	rdb, err := routes.NewClient(routes.ClientOptions{
		Addrs:   strings.Split(cfg.RedisAddr, ","),
		Cluster: cfg.RedisCluster,
		Tune: func(o *redis.UniversalOptions) {
			o.DialTimeout, o.ReadTimeout, o.WriteTimeout = 2*time.Second, 2*time.Second, 2*time.Second
			o.PoolSize = 128
			// A batched lookup is bounded by the node timeout through its context, which go-redis
			// otherwise ignores in favour of the read and write timeouts.
			o.ContextTimeoutEnabled = true
		},
	})
	if err != nil {
		return err
	}
	defer rdb.Close()
	routeStore := routes.NewStore(rdb)
	if err := routes.CheckStartup(ctx, routeStore, logger); err != nil {
		return err
	}

	zk, err := discovery.Dial(cfg.ZooKeeper, cfg.ZKSessionTimeout, logger)
	if err != nil {
		return err
	}
	defer zk.Close()

	reg := service.NewRegistry()
	m := newMetrics(reg)
	nodes := newNodeDirectory(routeStore, logger, m, zk.Check, zk.Get, cfg.ZKSessionTimeout)

	bgCtx, stopBackground := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	defer bg.Wait()
	defer stopBackground()
	nodeClient := apiclient.NewNodeClient(&http.Client{
		// Deliveries use -node-inflight connections per node; broadcasts may add a few.
		Transport: apiclient.NewTransport(max(2*cfg.NodeInFlight, 16)),
		Timeout:   cfg.NodeTimeout,
	}, cfg.InternalSecret)
	defer nodeClient.Close()
	disp, err := newDispatcher(dispatchConfig{
		NodeTimeout: cfg.NodeTimeout,
		Lookup:      lookupConfig{MaxUIDs: cfg.BatchMaxUIDs, InFlight: cfg.LookupInFlight, Queue: cfg.LookupQueue},
		Send:        sendConfig{MaxBytes: cfg.BatchMaxBytes, InFlight: cfg.NodeInFlight, Queue: cfg.NodeQueue},
	}, routeStore, nodes, nodeClient, logger, m)
	if err != nil {
		return err
	}
	bg.Go(func() { zk.Watch(bgCtx, nodes.update) })
	bg.Go(func() { disp.run(bgCtx) })
	marker := newMarker(routeStore, logger, m)
	bg.Go(func() { marker.run(bgCtx) })
	redeliver := newRedeliverer(disp.deliver, cfg.RedeliverWindow, cfg.RedeliverQueue, logger, m)
	bg.Go(func() { redeliver.run(bgCtx, time.Second) })
	m.registerWaiting(reg, redeliver.waiting)
	bg.Go(func() { expireLoop(bgCtx, store, logger) })

	deps := serverDeps{
		dispatcher: disp,
		rooms:      &rooms{registry: routeStore, history: routeStore, keep: cfg.RoomHistory, keepFor: cfg.RoomHistoryTTL, dir: routeStore, nodes: nodes, api: nodeClient, timeout: cfg.NodeTimeout, logger: logger, metrics: m},
		routes:     routeStore,
		nodes:      nodes,
		marks:      routeStore,
		marker:     marker,
		redeliver:  redeliver,
		inbox:      store,
		keys:       newKeyCache(apikey.NewStore(db), cfg.KeyCacheTTL, cfg.MySQLTimeout),
		metrics:    m,
		ready:      readyChecks(mysqlReady, routeStore, zk.Check),
	}
	return service.Serve(ctx, logger, cfg.ShutdownTimeout,
		// Lean: net/http's server machinery around each call was a quarter of a push's CPU here.
		service.Listener{Name: "public", Addr: cfg.ListenAddr, Handler: NewServer(logger, cfg, deps), Lean: true, MaxHeaderBytes: cfg.MaxHeader},
		service.Listener{Name: "internal", Addr: cfg.InternalAddr, Handler: newInternalServer(logger, cfg, deps, reg)},
	)
}

// expireLoop deletes expired pending messages once a minute.
func expireLoop(ctx context.Context, store *inbox.Store, logger *slog.Logger) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			if _, err := store.Expire(ctx, now); err != nil {
				logger.Warn("expire pending messages", "err", err)
			}
		}
	}
}
