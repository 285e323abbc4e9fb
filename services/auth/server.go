package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/heraldpush/herald/pkg/account"
	"github.com/heraldpush/herald/pkg/apikey"
	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/health"
	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/ratelimit"
	"github.com/heraldpush/herald/pkg/token"
)

// serverDeps are what the API handlers need; run builds them from real servers, tests from private ones.
type serverDeps struct {
	accounts *account.Store
	keys     *apikey.Store
	signer   *token.Signer
	nodes    *nodePicker
	ready    []health.Check
	metrics  *metrics
	// mysqlTimeout bounds a request's account or key check: a frozen MySQL holds the pooled
	// connections until their I/O deadline, and requests would queue behind them.
	mysqlTimeout time.Duration
}

// NewServer returns auth's public API. Every endpoint is listed here.
func NewServer(logger *slog.Logger, cfg Config, d serverDeps) http.Handler {
	limits := loginLimits{
		perUID:   ratelimit.NewKeyed(cfg.LoginPerUID, time.Minute, cfg.LoginPerUID, 0),
		perIP:    ratelimit.NewKeyed(cfg.LoginPerIP, time.Minute, cfg.LoginPerIP, 0),
		ipHeader: cfg.ClientIPHeader,
	}
	wrap := d.metrics.http.Wrap
	mux := http.NewServeMux()
	// Pages on -allowed-origins may log in from the browser; /v1/tokens never answers CORS, since an
	// API key does not belong in a browser.
	login := wrap(logger, "login", httpapi.CORS(cfg.AllowedOrigins, []string{http.MethodPost}, handleLogin(logger, cfg.MaxBody, limits, d)))
	mux.Handle("POST /v1/login", login)
	if len(cfg.AllowedOrigins) > 0 {
		mux.Handle("OPTIONS /v1/login", login)
	}
	mux.Handle("POST /v1/tokens", wrap(logger, "tokens", handleTokens(logger, cfg.MaxBody, d)))
	mux.Handle("GET /healthz", health.Healthz())
	mux.Handle("GET /readyz", health.Readyz(2*time.Second, d.ready...))
	mux.Handle("/", wrap(logger, "unknown", httpapi.Unrouted(mux, "/")))
	return mux
}

func readyChecks(mysql func(context.Context) error, zk *discovery.Client, nodes *nodePicker) []health.Check {
	return []health.Check{
		{Name: "mysql", Probe: mysql},
		{Name: "zookeeper", Probe: zk.Check},
		{Name: "push-servers", Probe: nodes.ready},
	}
}
