package main

import (
	"context"
	"database/sql"
	"log/slog"
	"net/http"
	"time"

	"github.com/heraldpush/herald/pkg/account"
	"github.com/heraldpush/herald/pkg/apikey"
	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/health"
	"github.com/heraldpush/herald/pkg/httpapi"
)

// serverDeps are what the handlers need; run builds them from real servers.
type serverDeps struct {
	db       *sql.DB
	admins   *adminStore
	accounts *account.Store
	keys     *apikey.Store
	pushAPI  *pushAPI
	nodes    *cluster
	sessions *sessions
	metrics  *metrics
	ready    []health.Check
}

// NewServer returns the console: its pages, their JSON API and the static files. Every endpoint is
// listed here.
func NewServer(logger *slog.Logger, cfg Config, d serverDeps) http.Handler {
	g := newGate(d.sessions, d.admins, cfg, logger, d.metrics)
	maxBody := cfg.MaxBody
	mux := http.NewServeMux()
	page := func(pattern, route string, h http.Handler) {
		mux.Handle(pattern, d.metrics.http.Wrap(logger, route, g.requirePage(h)))
	}
	api := func(pattern, route string, h http.Handler) {
		mux.Handle(pattern, d.metrics.http.Wrap(logger, "api_"+route, g.requireAPI(h)))
	}

	mux.Handle("GET /login", d.metrics.http.Wrap(logger, "login", handleLoginPage(g)))
	mux.Handle("POST /login", d.metrics.http.Wrap(logger, "login", handleLogin(g)))
	page("POST /logout", "logout", handleLogout(g))

	page("GET /{$}", "overview", handleOverviewPage(logger, d))
	page("GET /push", "push", handlePushForm())
	page("POST /push", "push", handlePushPage(logger, d))
	page("GET /users", "users", handleUsersPage(logger, d))
	page("POST /users/{uid}/kick", "kick", handleKickPage(logger, d))
	page("GET /accounts", "accounts", handleAccountsPage(logger, d))
	page("POST /accounts", "accounts", handleAccountCreatePage(logger, d))
	page("POST /accounts/{uid}/disable", "accounts", handleAccountDisablePage(logger, d, true))
	page("POST /accounts/{uid}/enable", "accounts", handleAccountDisablePage(logger, d, false))
	page("POST /accounts/{uid}/password", "accounts", handleAccountPasswordPage(logger, d))
	page("GET /keys", "keys", handleKeysPage(logger, d))
	page("POST /keys", "keys", handleKeyCreatePage(logger, d))
	page("POST /keys/{id}/revoke", "keys", handleKeyRevokePage(logger, d))
	page("GET /upstream", "upstream", handleUpstreamPage(logger, d))
	page("GET /rooms", "rooms", handleRoomsPage(d))
	page("POST /rooms/push", "room_push", handleRoomPushPage(logger, d))
	page("GET /nodes", "nodes", handleNodesPage(d))
	page("GET /nodes/{id}/drain", "drain", handleDrainConfirm(d))
	page("POST /nodes/{id}/drain", "drain", handleDrainPage(logger, d))
	page("POST /nodes/{id}/undrain", "undrain", handleUndrainPage(logger, d))

	api("GET /api/v1/overview", "overview", handleOverviewAPI(logger, d))
	api("POST /api/v1/push", "push", handlePushAPI(logger, d, maxBody))
	api("POST /api/v1/broadcast", "broadcast", handleBroadcastAPI(logger, d, maxBody))
	api("GET /api/v1/users/{uid}", "user", handleUserAPI(logger, d))
	api("POST /api/v1/users/{uid}/kick", "kick", handleKickAPI(logger, d))
	api("GET /api/v1/accounts", "accounts", handleAccountsAPI(logger, d))
	api("POST /api/v1/accounts", "account_create", handleAccountCreateAPI(logger, d, maxBody))
	api("POST /api/v1/accounts/{uid}/disable", "account_disable", handleAccountDisableAPI(logger, d, true))
	api("POST /api/v1/accounts/{uid}/enable", "account_enable", handleAccountDisableAPI(logger, d, false))
	api("POST /api/v1/accounts/{uid}/password", "account_password", handleAccountPasswordAPI(logger, d, maxBody))
	api("GET /api/v1/keys", "keys", handleKeysAPI(logger, d))
	api("POST /api/v1/keys", "key_create", handleKeyCreateAPI(logger, d, maxBody))
	api("POST /api/v1/keys/{id}/revoke", "key_revoke", handleKeyRevokeAPI(logger, d))
	api("GET /api/v1/upstream", "upstream", handleUpstreamAPI(logger, d))
	api("GET /api/v1/rooms", "rooms", handleRoomsAPI(d))
	api("POST /api/v1/rooms/{room}/push", "room_push", handleRoomPushAPI(logger, d, maxBody))
	api("GET /api/v1/nodes", "nodes", handleNodesAPI(d))
	api("POST /api/v1/nodes/{id}/drain", "drain", handleDrainAPI(logger, d))
	api("POST /api/v1/nodes/{id}/undrain", "undrain", handleUndrainAPI(logger, d))
	mux.Handle("/api/", d.metrics.http.Wrap(logger, "unknown", httpapi.Unrouted(mux, "/api/", "/")))

	mux.Handle("/", d.metrics.http.Wrap(logger, "unknown", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		renderStatus(w, r, http.StatusNotFound, "Not found", "There is no page "+r.Method+" "+r.URL.Path+".")
	})))
	mux.Handle("GET /static/", staticHandler())
	mux.Handle("GET /openapi/{file}", d.metrics.http.Wrap(logger, "openapi", handleOpenAPI()))
	mux.Handle("GET /healthz", health.Healthz())
	mux.Handle("GET /readyz", health.Readyz(2*time.Second, d.ready...))
	return securityHeaders(mux)
}

// securityHeaders keeps the console's pages to its own scripts and styles, out of frames, and its
// URLs out of Referer headers.
func securityHeaders(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hd := w.Header()
		hd.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
		hd.Set("X-Frame-Options", "DENY")
		hd.Set("X-Content-Type-Options", "nosniff")
		hd.Set("Referrer-Policy", "no-referrer")
		if hd.Get("Cache-Control") == "" {
			hd.Set("Cache-Control", "no-store")
		}
		h.ServeHTTP(w, r)
	})
}

func readyChecks(db *sql.DB, zk *discovery.Client) []health.Check {
	return []health.Check{
		{Name: "mysql", Probe: func(ctx context.Context) error { return db.PingContext(ctx) }},
		{Name: "zookeeper", Probe: zk.Check},
	}
}
