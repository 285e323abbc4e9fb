package main

import (
	"context"
	"log/slog"
	"net/http"
	"time"

	"github.com/heraldpush/herald/pkg/service"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldpush/herald/pkg/health"
	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/routes"
	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/services/push-route/internal/inbox"
)

// serverDeps are what the handlers need; run builds them from real servers.
type serverDeps struct {
	dispatcher *dispatcher
	rooms      *rooms
	routes     routeDirectory
	nodes      nodeResolver
	marks      pendingMarks
	marker     *marker
	redeliver  *redeliverer
	inbox      *inbox.Store
	keys       *keyCache
	metrics    *metrics
	ready      []health.Check
}

// NewServer returns the public push API. Every endpoint is listed here.
func NewServer(logger *slog.Logger, cfg Config, d serverDeps) http.Handler {
	l := limits{maxBody: cfg.MaxBody, maxData: cfg.MaxData, maxUIDs: cfg.MaxUIDs, maxTTL: cfg.MaxTTL}
	api := func(route string, h http.Handler) http.Handler {
		return d.metrics.http.Wrap(logger, route, withTrace(requireKey(d.keys, h)))
	}
	mux := http.NewServeMux()
	mux.Handle("POST "+wire.PathPush, api("push", handlePush(logger, l, d.dispatcher, d.inbox, d.marker, d.redeliver, d.metrics)))
	mux.Handle("POST "+wire.PathPushBroadcast, api("broadcast", handleBroadcast(logger, l, d.dispatcher, d.metrics)))
	mux.Handle("GET /v1/users/{uid}/connections", api("connections", handleConnections(logger, d.routes, d.nodes)))
	mux.Handle("GET /v1/rooms/{room}", api("room", http.HandlerFunc(d.rooms.handleInfo)))
	mux.Handle("POST /v1/rooms/{room}/push", api("room_push", d.rooms.handlePush(l)))
	mux.Handle("POST /v1/rooms/{room}/join", api("room_join", d.rooms.handleUsers(l, true)))
	mux.Handle("POST /v1/rooms/{room}/leave", api("room_leave", d.rooms.handleUsers(l, false)))
	mux.Handle("GET /healthz", health.Healthz())
	mux.Handle("GET /readyz", health.Readyz(2*time.Second, d.ready...))
	mux.Handle("/", d.metrics.http.Wrap(logger, "unknown", httpapi.Unrouted(mux, "/")))
	return mux
}

// newInternalServer serves the push-servers (acks, pending messages) and operators (metrics, probes).
func newInternalServer(logger *slog.Logger, cfg Config, d serverDeps, reg *prometheus.Registry) http.Handler {
	internal := func(route string, h http.Handler) http.Handler {
		return d.metrics.http.Wrap(logger, route, httpapi.RequireSecret(wire.SecretHeader, cfg.InternalSecret, h))
	}
	mux := service.OpsMux(reg, d.ready)
	mux.Handle("POST "+wire.PathAcks, internal("acks", handleAcks(logger, d.inbox, d.metrics)))
	mux.Handle("POST "+wire.PathPending, internal("pending", handlePending(logger, d.inbox, d.marks)))
	return mux
}

func readyChecks(mysql func(context.Context) error, store *routes.Store, zk func(context.Context) error) []health.Check {
	return []health.Check{
		{Name: "mysql", Probe: mysql},
		{Name: "redis", Probe: store.Ping},
		{Name: "zookeeper", Probe: zk},
	}
}
