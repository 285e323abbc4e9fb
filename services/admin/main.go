// Command admin is the operators' web console of Herald: the push-servers and their load, pushing to
// users or everyone, looking a user up and kicking them, accounts and API keys, the archive of
// upstream messages, and draining a node. Pages are rendered on the server; every action is also a
// JSON API behind the same login.
package main

import (
	"context"
	"fmt"
	"github.com/heraldpush/herald/pkg/health"
	"github.com/heraldpush/herald/services/admin/internal/archive"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"

	"errors"
	"github.com/heraldpush/herald/pkg/account"
	"github.com/heraldpush/herald/pkg/apikey"
	"github.com/heraldpush/herald/pkg/buildinfo"
	"github.com/heraldpush/herald/pkg/config"
	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/mysqldb"
	"github.com/heraldpush/herald/pkg/service"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "admin:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := parseConfig(args, getenv)
	if errors.Is(err, config.ErrVersion) {
		fmt.Fprintln(stdout, "herald-admin", buildinfo.Version())
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
	logger = logger.With("service", "admin")

	db, err := mysqldb.Open(ctx, cfg.MySQLDSN)
	if err != nil {
		return err
	}
	defer db.Close()
	if err := mysqldb.Migrate(ctx, db, logger); err != nil {
		return err
	}
	admins, err := newAdminStore(db, cfg.BcryptCost)
	if err != nil {
		return err
	}
	if err := admins.ensureFirst(ctx, logger, cfg.AdminUser, cfg.AdminPassword); err != nil {
		return err
	}
	accounts, err := account.NewStore(db, cfg.BcryptCost)
	if err != nil {
		return err
	}
	sessions, err := newSessions(cfg.SessionKey, cfg.SessionTTL, cfg.SecureCookies)
	if err != nil {
		return err
	}
	sessions.shared, sessions.logger = revokedStore{db}, logger
	if cfg.SessionKey == "" {
		logger.Warn("no -session-key: sessions are signed with a random key and end when this process does")
	}

	zk, err := discovery.Dial(cfg.ZooKeeper, cfg.ZKSessionTimeout, logger)
	if err != nil {
		return err
	}
	defer zk.Close()

	reg := service.NewRegistry()
	m := newMetrics(reg)

	httpClient := &http.Client{Timeout: cfg.CallTimeout}
	defer httpClient.CloseIdleConnections()
	nodes := newCluster(httpClient, cfg.InternalSecret, logger)

	bgCtx, stopBackground := context.WithCancel(context.Background())
	var bg sync.WaitGroup
	defer bg.Wait()
	defer stopBackground()
	bg.Go(func() { zk.Watch(bgCtx, nodes.update) })
	bg.Go(func() { nodes.sampleRates(bgCtx, cfg.RateInterval) })
	ready := readyChecks(db, zk)
	if cfg.KafkaBrokers != "" {
		archiver := archive.New(archive.Config{
			Brokers: strings.Split(cfg.KafkaBrokers, ","),
			Topic:   cfg.UpstreamTopic,
			GroupID: cfg.ArchiveGroup,
			Logger:  logger,
		}, db, reg)
		bg.Go(func() {
			if err := archiver.Run(bgCtx); err != nil {
				logger.Error("upstream archiver stopped", "err", err)
			}
		})
		ready = append(ready, health.Check{Name: "archiver", Probe: func(context.Context) error { return archiver.Err() }})
	}

	deps := serverDeps{
		db:       db,
		admins:   admins,
		accounts: accounts,
		keys:     apikey.NewStore(db),
		pushAPI:  newPushAPI(httpClient, cfg.PushAPIURL, cfg.PushAPIKey),
		nodes:    nodes,
		sessions: sessions,
		metrics:  m,
		ready:    ready,
	}
	return service.Serve(ctx, logger, cfg.ShutdownTimeout,
		service.Listener{Name: "public", Addr: cfg.ListenAddr, Handler: NewServer(logger, cfg, deps)},
		service.Listener{Name: "internal", Addr: cfg.InternalAddr, Handler: service.OpsMux(reg, deps.ready)},
	)
}
