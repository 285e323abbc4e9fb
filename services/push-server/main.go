// Command push-server holds devices' WebSocket connections. It verifies their tokens at upgrade,
// keeps them in a sharded session table served from epoll (no goroutine per idle connection), records
// where each user is connected in Redis, announces itself in ZooKeeper, and delivers what push-route
// hands it over the internal API.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldpush/herald/pkg/buildinfo"
	"github.com/heraldpush/herald/pkg/config"
	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/routes"
	"github.com/heraldpush/herald/pkg/service"
	"github.com/heraldpush/herald/pkg/token"
	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/services/push-server/internal/upstream"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "push-server:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := parseConfig(args, getenv)
	if errors.Is(err, config.ErrVersion) {
		fmt.Fprintln(stdout, "herald-push-server", buildinfo.Version())
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
	logger = logger.With("service", "push-server", "node", cfg.NodeID)

	keys, err := token.LoadPublicKeys(splitKeys(cfg.PublicKeys)...)
	if err != nil {
		return fmt.Errorf("jwt public keys: %w", err)
	}
	// A lower GC target than Go's default: a push-server's heap is mostly long-lived connections,
	// and the headroom GOGC=100 leaves for handshake garbage would double its memory per connection
	// (BENCHMARKS.md). GOGC in the environment still wins.
	if getenv("GOGC") == "" {
		debug.SetGCPercent(cfg.GCPercent)
	}
	rdb, err := routes.NewClient(routes.ClientOptions{
		Addrs:   strings.Split(cfg.RedisAddr, ","),
		Cluster: cfg.RedisCluster,
		Tune: func(o *redis.UniversalOptions) {
			o.DialTimeout, o.ReadTimeout, o.WriteTimeout = 2*time.Second, 2*time.Second, 2*time.Second
			// Route writes are small; a few connections with small buffers serve thousands of
			// connects a second, where the defaults hold 128 KiB per pooled connection.
			o.PoolSize, o.ReadBufferSize, o.WriteBufferSize = 8, 8<<10, 8<<10
		},
	})
	if err != nil {
		return err
	}
	defer rdb.Close()
	store := routes.NewStore(rdb)
	if err := routes.CheckStartup(ctx, store, logger); err != nil {
		return err
	}
	pushRoute, closeIdle := newPushRouteClient(cfg.PushRouteURL, cfg.InternalSecret)
	defer closeIdle()
	producer := upstream.New(upstream.Config{
		Brokers: strings.Split(cfg.KafkaBrokers, ","),
		Topic:   cfg.UpstreamTopic,
		Timeout: cfg.UpstreamTimeout,
		Logger:  logger,
	})
	reg := service.NewRegistry()
	s, err := newServer(cfg, logger, serverDeps{
		routes:    store,
		verifier:  token.NewVerifier(keys...),
		pushRoute: pushRoute,
		producer:  producer,
		registry:  reg,
	})
	if err != nil {
		return err
	}
	defer s.engine.Close()
	// Waits for what Kafka still owes, after the drain: every waiting device gets its up_ack or error.
	defer func() {
		if err := producer.Close(); err != nil {
			logger.Warn("close kafka producer", "err", err)
		}
	}()

	// Routes left by an earlier process with this node id name connections that no longer exist.
	sweepCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	if n, err := store.SweepNode(sweepCtx, cfg.NodeID); err != nil {
		logger.Warn("could not sweep routes of an earlier run", "err", err)
	} else if n > 0 {
		logger.Info("swept routes of an earlier run", "routes", n)
	}
	if n, err := store.SweepNodeRooms(sweepCtx, cfg.NodeID); err != nil {
		logger.Warn("could not sweep room entries of an earlier run", "err", err)
	} else if n > 0 {
		logger.Info("swept room entries of an earlier run", "rooms", n)
	}
	cancel()

	zk, err := discovery.Dial(cfg.ZooKeeper, cfg.ZKSessionTimeout, logger)
	if err != nil {
		return err
	}
	defer zk.Close()

	bgCtx, stopBackground := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	defer bg.Wait()
	defer stopBackground()
	bg.Go(func() { s.run(bgCtx) })

	// Both listen before the node announces itself, so auth never hands out an address that refuses.
	internalLn, err := net.Listen("tcp", cfg.InternalAddr)
	if err != nil {
		return fmt.Errorf("listen internal %s: %w", cfg.InternalAddr, err)
	}
	publicLn, err := net.Listen("tcp", cfg.ListenAddr)
	if err != nil {
		internalLn.Close()
		return fmt.Errorf("listen public %s: %w", cfg.ListenAddr, err)
	}
	// The listeners outlive ctx: a stopping node keeps serving deliveries while it drains.
	s.ready = readyChecks(s, zk.Check)
	serveCtx, stopServing := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() {
		served <- service.Serve(serveCtx, logger, 5*time.Second,
			service.Listener{Name: "internal", Listener: internalLn, Handler: newInternalServer(s, reg, s.ready)},
			service.Listener{Name: "public", Listener: publicLn, Accept: s.acceptPublic},
		)
	}()
	stopListeners := func() error {
		s.endStreams()
		stopServing()
		return <-served
	}

	node := discovery.Node{
		ID: cfg.NodeID, WSURL: cfg.AdvertiseWSURL, InternalURL: cfg.AdvertiseIntURL,
		Weight: cfg.Weight, StartedAt: time.Now().UTC().Truncate(time.Second),
		Encodings: []string{wire.ContentTypeProtobuf, wire.ContentTypeBatchStream},
	}
	s.routes.markSynced(ctx)
	registration, err := zk.Register(ctx, node)
	if err != nil {
		stopListeners()
		if errors.Is(ctx.Err(), context.Canceled) {
			return nil // stopped before ZooKeeper ever answered
		}
		return err
	}
	s.registration.Store(registration)
	logger.Info("registered in zookeeper", "ws_url", node.WSURL)

	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-served:
		stopServing()
	}
	s.drain(cfg.ShutdownTimeout)
	if serveErr == nil {
		serveErr = stopListeners()
	}
	s.routes.flush(10 * time.Second)
	// After the drain no connection is left to send acks (unless it timed out: later acks are not
	// waited for, and their messages are replayed once more).
	s.acks.flush(5 * time.Second)
	if err := registration.Deregister(); err != nil {
		logger.Warn("deregister", "err", err)
	}
	logger.Info("stopped")
	return serveErr
}

// splitKeys splits the -jwt-public-keys value into file paths, unless it is PEM text itself.
func splitKeys(v string) []string {
	if strings.Contains(v, "-----BEGIN") {
		return []string{v}
	}
	return strings.Split(v, ",")
}
