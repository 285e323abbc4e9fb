package main

import (
	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	http      *httpapi.Metrics
	logins    *prometheus.CounterVec
	tokens    prometheus.Counter
	liveNodes prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		http: httpapi.NewMetrics(reg),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_auth_logins_total",
			Help: "Login attempts by result (ok, bad_credentials, disabled, rate_limited, no_push_server, error).",
		}, []string{"result"}),
		tokens: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_auth_api_tokens_total",
			Help: "Tokens minted for backends through POST /v1/tokens.",
		}),
		liveNodes: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_auth_ring_nodes",
			Help: "Push-servers in the ring (live and not draining).",
		}),
	}
	reg.MustRegister(m.logins, m.tokens, m.liveNodes)
	return m
}
