package archive

import (
	"errors"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

type metrics struct {
	records        prometheus.Counter
	duplicates     prometheus.Counter
	skipped        *prometheus.CounterVec
	insertFailures prometheus.Counter
	kafkaErrors    *prometheus.CounterVec
	batches        prometheus.Counter
	lag            *prometheus.GaugeVec
	lastRecordTS   prometheus.Gauge
	lastBatch      prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) *metrics {
	m := &metrics{
		records: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_archive_records_total",
			Help: "Upstream records archived: stored in upstream_messages, or found there already. Its rate is the archive's throughput.",
		})),
		duplicates: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_archive_duplicates_total",
			Help: "Archived records whose id was stored already (a redelivery or a client's resend); included in herald_archive_records_total.",
		})),
		skipped: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_archive_skipped_total",
			Help: "Records skipped and committed past, by reason: bad_json (not an upstream record), missing_field (no id or uid), bad_field (too long or not printable ASCII), rejected (refused by MySQL).",
		}, []string{"reason"})),
		insertFailures: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_archive_insert_failures_total",
			Help: "Failed attempts to store a batch in MySQL; the batch is tried again.",
		})),
		kafkaErrors: register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "herald_archive_kafka_errors_total",
			Help: "Kafka failures by operation: fetch (the consumer starts again), commit (the batch, stored already, will be delivered again).",
		}, []string{"op"})),
		batches: register(reg, prometheus.NewCounter(prometheus.CounterOpts{
			Name: "herald_archive_batches_total",
			Help: "Batches archived and committed.",
		})),
		lag: register(reg, prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "herald_archive_consumer_lag",
			Help: "Records in a partition after the last one archived, as of its latest fetch, for the partitions this member consumed in the last minute.",
		}, []string{"partition"})),
		lastRecordTS: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_archive_last_record_timestamp_seconds",
			Help: "The ts (time the push-server received it) of the newest record of the latest archived batch, in unix seconds.",
		})),
		lastBatch: register(reg, prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "herald_archive_last_batch_timestamp_seconds",
			Help: "When the latest batch was archived, in unix seconds.",
		})),
	}
	for _, r := range skipReasons {
		m.skipped.WithLabelValues(r)
	}
	for _, op := range []string{"fetch", "commit"} {
		m.kafkaErrors.WithLabelValues(op)
	}
	return m
}

// register registers c on reg, or returns the collector registered already under its name, so that
// several archivers of one process share their metrics. A nil reg registers nothing.
func register[C prometheus.Collector](reg prometheus.Registerer, c C) C {
	if reg == nil {
		return c
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if existing, ok := are.ExistingCollector.(C); ok {
				return existing
			}
		}
		panic(err)
	}
	return c
}

// lagExpiry is how long a partition stays in the lag gauge without a fetch. A partition that a
// rebalance gave to another member would otherwise report its last lag here forever; one that is
// idle has lag 0, and leaving the gauge says as much.
const lagExpiry = time.Minute

// lagTracker keeps the lag gauge of the partitions this member consumes: the partition's high
// watermark, as its latest fetched record reported it, minus the offset after the last record
// archived (before the first archived, the first fetched).
type lagTracker struct {
	gauge *prometheus.GaugeVec

	// mu guards parts.
	mu    sync.Mutex
	parts map[int]*partitionLag
}

type partitionLag struct {
	highWater int64
	next      int64
	seen      time.Time
}

func newLagTracker(g *prometheus.GaugeVec) *lagTracker {
	return &lagTracker{gauge: g, parts: map[int]*partitionLag{}}
}

// reset forgets every partition, as a new Reader may be given others.
func (t *lagTracker) reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for p := range t.parts {
		t.gauge.DeleteLabelValues(strconv.Itoa(p))
	}
	clear(t.parts)
}

// fetched records the high watermarks of a batch about to be stored.
func (t *lagTracker) fetched(batch []kafka.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := time.Now()
	for _, m := range batch {
		p, ok := t.parts[m.Partition]
		if !ok {
			p = &partitionLag{next: m.Offset}
			t.parts[m.Partition] = p
		}
		p.highWater = max(p.highWater, m.HighWaterMark)
		p.seen = now
	}
	t.publish(now)
}

// archived records that a batch is stored.
func (t *lagTracker) archived(batch []kafka.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range batch {
		if p, ok := t.parts[m.Partition]; ok {
			p.next = max(p.next, m.Offset+1)
		}
	}
	t.publish(time.Now())
}

func (t *lagTracker) publish(now time.Time) {
	for id, p := range t.parts {
		label := strconv.Itoa(id)
		if now.Sub(p.seen) > lagExpiry {
			t.gauge.DeleteLabelValues(label)
			delete(t.parts, id)
			continue
		}
		t.gauge.WithLabelValues(label).Set(float64(max(p.highWater-p.next, 0)))
	}
}
