// Command auth logs devices in and mints their tokens: it checks an account (or a backend's API key),
// signs a JWT the push-servers verify, and tells the device which push-server to connect to, chosen
// from the live ones in ZooKeeper by a consistent-hash ring on the uid.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"errors"
	"github.com/heraldpush/herald/pkg/account"
	"github.com/heraldpush/herald/pkg/apikey"
	"github.com/heraldpush/herald/pkg/buildinfo"
	"github.com/heraldpush/herald/pkg/config"
	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/mysqldb"
	"github.com/heraldpush/herald/pkg/service"
	"github.com/heraldpush/herald/pkg/token"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "auth:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := parseConfig(args, getenv)
	if errors.Is(err, config.ErrVersion) {
		fmt.Fprintln(stdout, "herald-auth", buildinfo.Version())
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
	logger = logger.With("service", "auth")

	priv, err := token.LoadPrivateKey(cfg.PrivateKey)
	if err != nil {
		return fmt.Errorf("jwt private key: %w", err)
	}
	signer := token.NewSigner(priv, cfg.TokenTTL)

	// Up without MySQL: /readyz says so and logins answer 503 until it answers and is migrated.
	db, mysqlReady, err := mysqldb.Start(ctx, cfg.MySQLDSN, logger)
	if err != nil {
		return err
	}
	defer db.Close()
	accounts, err := account.NewStore(db, cfg.BcryptCost)
	if err != nil {
		return err
	}

	zk, err := discovery.Dial(cfg.ZooKeeper, cfg.ZKSessionTimeout, logger)
	if err != nil {
		return err
	}
	defer zk.Close()

	reg := service.NewRegistry()
	metrics := newMetrics(reg)

	nodes := newNodePicker(metrics, zk.Check, cfg.ZKSessionTimeout)
	go zk.Watch(ctx, nodes.update)

	deps := serverDeps{
		accounts: accounts,
		keys:     apikey.NewStore(db),
		signer:   signer,
		nodes:    nodes,
		ready:    readyChecks(mysqlReady, zk, nodes),
		metrics:  metrics,

		mysqlTimeout: cfg.MySQLTimeout,
	}
	return service.Serve(ctx, logger, cfg.ShutdownTimeout,
		service.Listener{Name: "public", Addr: cfg.ListenAddr, Handler: NewServer(logger, cfg, deps)},
		service.Listener{Name: "internal", Addr: cfg.InternalAddr, Handler: service.OpsMux(reg, deps.ready)},
	)
}
