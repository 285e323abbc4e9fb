package main

import (
	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	http           *httpapi.Metrics
	upgrades       *prometheus.CounterVec
	opened         *prometheus.CounterVec
	refused        *prometheus.CounterVec
	closed         *prometheus.CounterVec
	framesIn       prometheus.Counter
	rateLimited    prometheus.Counter
	idleClosed     prometheus.Counter
	acks           prometheus.Counter
	pushed         prometheus.Counter
	routeErrors    *prometheus.CounterVec
	upstream       *prometheus.CounterVec
	upPaused       prometheus.Counter
	roomJoins      *prometheus.CounterVec
	roomFrames     prometheus.Counter
	roomRecoveries *prometheus.CounterVec
	roomWrites     prometheus.Counter

	// Ack and offline (acks.go, replay.go).
	acksForwarded    prometheus.Counter
	ackBatchesFailed prometheus.Counter
	acksDropped      *prometheus.CounterVec
	replays          prometheus.Counter
	replaysSkipped   prometheus.Counter
	replayed         prometheus.Counter
	replayFailures   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		http: httpapi.NewMetrics(reg),
		upgrades: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_ws_upgrades_total", Help: "WebSocket upgrade attempts by HTTP status (101 accepted) or failure.",
		}, []string{"status"}),
		opened: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_connections_opened_total", Help: "Connections admitted, by transport: websocket, sse or poll (a long-poll session).",
		}, []string{"transport"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_ws_refused_total", Help: "Upgrades refused by the node's checks, by reason (expired, bad_signature, unknown_key, wrong_audience, malformed, origin, draining, capacity, …).",
		}, []string{"reason"}),
		closed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_ws_closed_total", Help: "Closed connections by close code (peer: the client just went away).",
		}, []string{"code"}),
		framesIn:    prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_ws_frames_in_total", Help: "Messages received from devices."}),
		rateLimited: prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_ws_rate_limited_total", Help: "Messages refused by the per-connection rate limit."}),
		idleClosed:  prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_ws_idle_closed_total", Help: "Connections closed after three silent heartbeats."}),
		acks:        prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_ws_acks_total", Help: "Acks received from devices."}),
		pushed:      prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_ws_pushed_total", Help: "Push frames written to connections (deliver and broadcast)."}),
		upstream: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_upstream_messages_total", Help: "Upstream messages by outcome: acked (Kafka stored it) or failed (the device got a retryable error).",
		}, []string{"outcome"}),
		roomJoins: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_room_joins_total", Help: "Room joins and leaves by outcome: joined, left, forbidden, invalid_room, too_many_rooms.",
		}, []string{"outcome"}),
		roomRecoveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_room_recoveries_total", Help: "Joins with since, by whether the history reached back far enough (recovered true or false).",
		}, []string{"recovered"}),
		roomFrames: prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_room_frames_total", Help: "Room frames encoded (one per room per merge window)."}),
		roomWrites: prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_room_writes_total", Help: "Room frames written to members."}),
		upPaused:   prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_upstream_paused_total", Help: "Times a connection's reads paused because -max-up-inflight messages waited for Kafka."}),
		routeErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_route_errors_total", Help: "Redis route failures by kind.",
		}, []string{"kind"}),
		acksForwarded: prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_acks_forwarded_total", Help: "Acks handed to push-route."}),
		ackBatchesFailed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_ack_batches_failed_total", Help: "Ack batches push-route did not take (unreachable or an error); they are retried.",
		}),
		acksDropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_acks_dropped_total",
			Help: "Acks given up on, by reason: buffer_full, rejected (push-route refused the batch as malformed), shutdown. Their messages are replayed once more.",
		}, []string{"reason"}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_replays_total", Help: "New connections whose pending messages were fetched from push-route."}),
		replaysSkipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_replays_skipped_total", Help: "New connections whose user had no pending marker in Redis: nothing fetched.",
		}),
		replayed: prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_replayed_messages_total", Help: "Pending messages written to new connections."}),
		replayFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_replay_failures_total",
			Help: "Replays not done, by reason: push_route (pending list not fetched), stalled (client stopped reading), invalid_message (one message skipped).",
		}, []string{"reason"}),
	}
	reg.MustRegister(m.roomJoins, m.roomRecoveries, m.roomFrames, m.roomWrites)
	reg.MustRegister(m.upgrades, m.opened, m.refused, m.closed, m.framesIn, m.rateLimited, m.idleClosed, m.acks, m.pushed, m.routeErrors,
		m.upstream, m.upPaused, m.acksForwarded, m.ackBatchesFailed, m.acksDropped, m.replays, m.replaysSkipped, m.replayed, m.replayFailures)
	return m
}

// gauges are the functions the node's gauges read at each scrape.
type gauges struct {
	connections, users, acksBuffered, replaysWaiting func() int
	maxConns                                         int
}

func (m *metrics) registerGauges(reg prometheus.Registerer, g gauges) {
	gauge := func(name, help string, f func() int) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, func() float64 { return float64(f()) })
	}
	reg.MustRegister(
		gauge("herald_ws_connections", "Open connections.", g.connections),
		gauge("herald_ws_users", "Distinct users with an open connection.", g.users),
		gauge("herald_acks_buffered", "Acks waiting to be handed to push-route.", g.acksBuffered),
		gauge("herald_replays_waiting", "New connections waiting for their pending messages.", g.replaysWaiting),
		gauge("herald_ws_connections_limit", "The node's -max-conns: connections beyond it are refused (503).", func() int { return g.maxConns }),
	)
}
