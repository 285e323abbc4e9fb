package main

import (
	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	http        *httpapi.Metrics
	upgrades    *prometheus.CounterVec
	closed      *prometheus.CounterVec
	framesIn    prometheus.Counter
	rateLimited prometheus.Counter
	idleClosed  prometheus.Counter
	acks        prometheus.Counter
	pushed      prometheus.Counter
	routeErrors *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, s *server) *metrics {
	m := &metrics{
		http: httpapi.NewMetrics(reg),
		upgrades: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_ws_upgrades_total", Help: "WebSocket upgrade attempts by HTTP status (101 accepted) or failure.",
		}, []string{"status"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_ws_closed_total", Help: "Closed connections by close code (peer: the client just went away).",
		}, []string{"code"}),
		framesIn:    prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_ws_frames_in_total", Help: "Messages received from devices."}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_ws_rate_limited_total", Help: "Messages refused by the per-connection rate limit."}),
		idleClosed:  prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_ws_idle_closed_total", Help: "Connections closed after three silent heartbeats."}),
		acks:        prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_ws_acks_total", Help: "Acks received from devices."}),
		pushed:      prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_ws_pushed_total", Help: "Push frames written to connections (deliver and broadcast)."}),
		routeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_route_errors_total", Help: "Redis route failures by kind.",
		}, []string{"kind"}),
	}
	reg.MustRegister(m.upgrades, m.closed, m.framesIn, m.rateLimited, m.idleClosed, m.acks, m.pushed, m.routeErrors,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herald_ws_connections", Help: "Open connections."},
			func() float64 { c, _ := s.hub.Count(); return float64(c) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "herald_ws_users", Help: "Distinct users with an open connection."},
			func() float64 { _, u := s.hub.Count(); return float64(u) }),
	)
	return m
}
