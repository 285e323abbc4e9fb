package main

import (
	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	http                *httpapi.Metrics
	pushes              prometheus.Counter
	broadcasts          prometheus.Counter
	roomPushes          prometheus.Counter
	roomHistoryFailures prometheus.Counter
	deliveries          prometheus.Counter
	acks                prometheus.Counter
	nodeErrors          *prometheus.CounterVec
	staleRemoved        prometheus.Counter
	staleDropped        prometheus.Counter
	swept               prometheus.Counter
	liveNodes           prometheus.Gauge
	deliverBatch        prometheus.Histogram
	lookupBatch         prometheus.Histogram
	// lookupFailedUIDs counts uids whose routes a lookup could not read while others' were read: a
	// Redis Cluster master failing costs its slots' users only.
	lookupFailedUIDs prometheus.Counter
	marksDropped     prometheus.Counter
	redeliveries     *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		http:                httpapi.NewMetrics(reg),
		pushes:              prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_push_requests_total", Help: "Accepted push calls."}),
		broadcasts:          prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_push_broadcasts_total", Help: "Accepted broadcast calls."}),
		roomPushes:          prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_room_pushes_total", Help: "Accepted room push calls."}),
		roomHistoryFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_room_history_failures_total", Help: "Room messages delivered but not kept in the room's history (Redis failed)."}),
		deliveries:          prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_push_deliveries_total", Help: "Connections written by pushes and broadcasts."}),
		acks:                prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_push_acks_total", Help: "Acks received from push-servers."}),
		nodeErrors:          prometheus.NewCounterVec(prometheus.CounterOpts{Name: "herald_push_node_errors_total", Help: "Failed calls to push-servers by node."}, []string{"node"}),
		staleRemoved:        prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_push_stale_routes_removed_total", Help: "Routes removed because their node did not hold the connection."}),
		staleDropped:        prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_push_stale_routes_dropped_total", Help: "Stale-route removals dropped because the queue was full."}),
		swept:               prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_push_swept_routes_total", Help: "Routes swept from dead push-servers."}),
		liveNodes:           prometheus.NewGauge(prometheus.GaugeOpts{Name: "herald_push_live_nodes", Help: "Push-servers live in ZooKeeper."}),
		deliverBatch:        prometheus.NewHistogram(prometheus.HistogramOpts{Name: "herald_push_deliver_batch_pushes", Help: "Pushes carried by one deliver-batch call to a push-server.", Buckets: prometheus.ExponentialBuckets(1, 2, 10)}),
		lookupBatch:         prometheus.NewHistogram(prometheus.HistogramOpts{Name: "herald_push_lookup_batch_pushes", Help: "Pushes whose routes one Redis pipeline read.", Buckets: prometheus.ExponentialBuckets(1, 2, 10)}),
		lookupFailedUIDs:    prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_push_lookup_failed_uids_total", Help: "Uids of pushes whose routes could not be read while the other uids' were (a Redis Cluster master failing); they count as not delivered, and stored messages are tried again."}),
		marksDropped:        prometheus.NewCounter(prometheus.CounterOpts{Name: "herald_push_pending_marks_dropped_total", Help: "Pending markers Redis refused and that did not fit the retry set."}),
		redeliveries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_push_redeliveries_total",
			Help: "Stored messages that missed a connected user, by outcome per user: delivered (a later try reached a device), given_up (no device within -redeliver-window, or the ttl ended: the next connect replays it), dropped (the queue was full).",
		}, []string{"outcome"}),
	}
	reg.MustRegister(m.marksDropped, m.redeliveries, m.pushes, m.broadcasts, m.roomPushes, m.roomHistoryFailures, m.deliveries, m.acks, m.nodeErrors, m.staleRemoved, m.staleDropped, m.swept, m.liveNodes, m.deliverBatch, m.lookupBatch, m.lookupFailedUIDs)
	return m
}

// registerWaiting adds the gauge of stored messages waiting for redelivery.
func (m *metrics) registerWaiting(reg prometheus.Registerer, waiting func() int) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "herald_push_redeliveries_waiting", Help: "Stored messages waiting to be redelivered to users they missed.",
	}, func() float64 { return float64(waiting()) }))
}
