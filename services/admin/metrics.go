package main

import (
	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	http         *httpapi.Metrics
	logins       *prometheus.CounterVec
	actions      *prometheus.CounterVec
	csrfRejected prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		http: httpapi.NewMetrics(reg),
		logins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_admin_logins_total",
			Help: "Admin logins (form and Basic credentials) by result: ok, bad_credentials, rate_limited, error.",
		}, []string{"result"}),
		actions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_admin_actions_total",
			Help: "Operator actions done, by action: push, broadcast, kick, drain, account_create, account_disable, account_enable, account_password, key_create, key_revoke.",
		}, []string{"action"}),
		csrfRejected: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_admin_csrf_rejected_total",
			Help: "Requests refused for a missing or wrong CSRF token.",
		}),
	}
	reg.MustRegister(m.logins, m.actions, m.csrfRejected)
	return m
}
