// Package archive copies the upstream Kafka topic (herald.upstream) into the MySQL table
// upstream_messages. An Archiver is a member of a Kafka consumer group: it writes each batch of
// records in one transaction and commits the batch's offsets only after the rows are stored, so a
// crash or a rebalance may deliver a record again but never loses one. The table is keyed by the
// record's id, which makes the second delivery (and a client's resend of the same message) a no-op.
package archive

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/heraldpush/herald/pkg/wire"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// DefaultGroupID is the consumer group of archivers when Config.GroupID is empty.
const DefaultGroupID = "herald-archiver"

// Config configures an Archiver. The zero value of every field but Brokers has a working default.
type Config struct {
	// Brokers are the Kafka bootstrap addresses (host:port). Required.
	Brokers []string
	// Topic is the topic archived; empty means wire.UpstreamTopic.
	Topic string
	// GroupID is the consumer group; empty means DefaultGroupID. Archivers of one group share the
	// topic's partitions; a group that has no committed offset starts at the oldest record.
	GroupID string
	// BatchSize is the most records stored in one transaction; zero means 500.
	BatchSize int
	// BatchWait is how long a batch waits for more records after its first one; zero means 200ms.
	BatchWait time.Duration
	// Logger receives failures and skipped records; nil means slog.Default().
	Logger *slog.Logger

	// HeartbeatInterval, SessionTimeout, RebalanceTimeout and JoinGroupBackoff are the consumer
	// group's timings. Zero means 500ms, 6s, 5s and 200ms: a member joins within a second or two
	// and the partitions of a member that died move within SessionTimeout. (kafka-go's own
	// defaults, 3s/30s/30s/5s, make every join and restart take tens of seconds.)
	HeartbeatInterval time.Duration
	SessionTimeout    time.Duration
	RebalanceTimeout  time.Duration
	JoinGroupBackoff  time.Duration
	// MaxBackoff caps the wait between attempts after Kafka or MySQL failed; zero means 5s.
	MaxBackoff time.Duration
}

func (c Config) withDefaults() Config {
	if c.Topic == "" {
		c.Topic = wire.UpstreamTopic
	}
	if c.GroupID == "" {
		c.GroupID = DefaultGroupID
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 500
	}
	if c.BatchWait <= 0 {
		c.BatchWait = 200 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.HeartbeatInterval <= 0 {
		c.HeartbeatInterval = 500 * time.Millisecond
	}
	if c.SessionTimeout <= 0 {
		c.SessionTimeout = 6 * time.Second
	}
	if c.RebalanceTimeout <= 0 {
		c.RebalanceTimeout = 5 * time.Second
	}
	if c.JoinGroupBackoff <= 0 {
		c.JoinGroupBackoff = 200 * time.Millisecond
	}
	if c.MaxBackoff <= 0 {
		c.MaxBackoff = 5 * time.Second
	}
	return c
}

const (
	// minBackoff is the first wait after a failure; each further failure in a row doubles it up
	// to Config.MaxBackoff.
	minBackoff = 200 * time.Millisecond
	// commitTimeout bounds the offset commit of a batch whose rows are stored. The commit runs
	// to the end even when Run's context ends meanwhile, so a stopping archiver leaves nothing
	// stored-but-uncommitted that its successor would have to store again.
	commitTimeout = 5 * time.Second
)

// ErrClosed is returned by Run after Close.
var ErrClosed = errors.New("archive: archiver closed")

// Archiver is one member of the archiving consumer group. Make it with New, then call Run.
type Archiver struct {
	cfg Config
	db  *sql.DB
	log *slog.Logger
	m   *metrics
	lag *lagTracker

	// mu guards closed, closing and the Add calls of running, so that Close cannot miss a Run.
	mu      sync.Mutex
	closed  bool
	closing chan struct{} // closed by Close
	running sync.WaitGroup

	// errMu guards kafkaErr, storeErr and readerSeq.
	errMu     sync.Mutex
	kafkaErr  error  // why the latest Reader failed; nil once a later one proved healthy
	storeErr  error  // why the latest attempt to store a batch failed; nil once one succeeded
	readerSeq uint64 // counts Readers closed, so that a late health timer of one does nothing
}

// New returns an Archiver that stores into db (a database migrated to upstream_messages) and
// registers its metrics on reg (nil: not registered). It connects to nothing until Run.
func New(cfg Config, db *sql.DB, reg prometheus.Registerer) *Archiver {
	cfg = cfg.withDefaults()
	m := newMetrics(reg)
	return &Archiver{
		cfg:     cfg,
		db:      db,
		log:     cfg.Logger.With("component", "archiver", "topic", cfg.Topic, "group", cfg.GroupID),
		m:       m,
		lag:     newLagTracker(m.lag),
		closing: make(chan struct{}),
	}
}

// Run consumes the topic until ctx ends or Close is called, and then returns nil. Kafka or MySQL
// being down is not an error: Run logs it and tries again with backoff. It returns an error only
// for a configuration kafka-go refuses, or ErrClosed after Close. Call it once at a time.
func (a *Archiver) Run(ctx context.Context) error {
	a.mu.Lock()
	if a.closed {
		a.mu.Unlock()
		return ErrClosed
	}
	a.running.Add(1)
	a.mu.Unlock()
	defer a.running.Done()

	rc := a.readerConfig()
	if err := validate(rc); err != nil {
		return fmt.Errorf("archive: %w", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-a.closing:
			cancel()
		case <-ctx.Done():
		}
	}()

	a.log.Info("archiver started", "brokers", strings.Join(a.cfg.Brokers, ","))
	defer a.log.Info("archiver stopped")
	failures := 0
	for {
		err := a.consume(ctx, rc, func() { failures = 0 })
		if ctx.Err() != nil {
			return nil
		}
		failures++
		a.setKafkaErr(err)
		wait := backoff(failures, a.cfg.MaxBackoff)
		a.log.Warn("archiver: consuming failed; starting again", "err", err, "failures", failures, "retry_in", wait)
		if !sleep(ctx, wait) {
			return nil
		}
	}
}

// Close stops Run, if it is running, and waits until it has returned. The Archiver cannot be run
// again. The database is the caller's: Close leaves it open.
func (a *Archiver) Close() error {
	a.mu.Lock()
	if !a.closed {
		a.closed = true
		close(a.closing)
	}
	a.mu.Unlock()
	a.running.Wait()
	return nil
}

// Err reports the failure the archiver is retrying after, or nil when it works (or has not failed
// yet): MySQL's until a batch is stored, else Kafka's until the consumer has archived a batch or
// run for a session timeout without failing. It suits a readiness check.
func (a *Archiver) Err() error {
	a.errMu.Lock()
	defer a.errMu.Unlock()
	if a.storeErr != nil {
		return a.storeErr
	}
	return a.kafkaErr
}

func (a *Archiver) setKafkaErr(err error) {
	a.errMu.Lock()
	a.kafkaErr = err
	a.errMu.Unlock()
}

func (a *Archiver) setStoreErr(err error) {
	a.errMu.Lock()
	a.storeErr = err
	a.errMu.Unlock()
}

// watchReader clears the Kafka error once the Reader about to start has lived for healthy
// without failing: kafka-go surfaces a broker it cannot reach within a few join or fetch
// attempts, well inside a session timeout. The returned func, called when the Reader is done,
// disarms it.
func (a *Archiver) watchReader(healthy time.Duration) (done func()) {
	a.errMu.Lock()
	seq := a.readerSeq
	a.errMu.Unlock()
	t := time.AfterFunc(healthy, func() {
		a.errMu.Lock()
		if a.readerSeq == seq {
			a.kafkaErr = nil
		}
		a.errMu.Unlock()
	})
	return func() {
		t.Stop()
		a.errMu.Lock()
		a.readerSeq++
		a.errMu.Unlock()
	}
}

func (a *Archiver) readerConfig() kafka.ReaderConfig {
	debug := kafkaLogger(a.log, slog.LevelDebug)
	return kafka.ReaderConfig{
		Brokers: a.cfg.Brokers,
		GroupID: a.cfg.GroupID,
		Topic:   a.cfg.Topic,
		Dialer: &kafka.Dialer{
			ClientID:  "herald-archiver",
			Timeout:   10 * time.Second,
			DualStack: true,
		},
		// Room for a whole batch, so that a full batch never waits on the fetchers.
		QueueCapacity:     a.cfg.BatchSize,
		StartOffset:       kafka.FirstOffset,
		CommitInterval:    0, // commit synchronously, when CommitMessages is called, and only then
		HeartbeatInterval: a.cfg.HeartbeatInterval,
		SessionTimeout:    a.cfg.SessionTimeout,
		RebalanceTimeout:  a.cfg.RebalanceTimeout,
		JoinGroupBackoff:  a.cfg.JoinGroupBackoff,
		// A fetch holds the partition's goroutine (and Close, which waits for it) this long.
		MaxWait:               time.Second,
		WatchPartitionChanges: true,
		// kafka-go reports every retry of every partition; the failures that matter reach Run
		// through FetchMessage and CommitMessages, and are logged there once per attempt.
		Logger:      debug,
		ErrorLogger: debug,
	}
}

// validate checks what kafka.NewReader would otherwise panic on.
func validate(rc kafka.ReaderConfig) error {
	if err := rc.Validate(); err != nil {
		return fmt.Errorf("kafka reader config: %w", err)
	}
	gc := kafka.ConsumerGroupConfig{
		ID:                rc.GroupID,
		Brokers:           rc.Brokers,
		Topics:            []string{rc.Topic},
		HeartbeatInterval: rc.HeartbeatInterval,
		SessionTimeout:    rc.SessionTimeout,
		RebalanceTimeout:  rc.RebalanceTimeout,
		JoinGroupBackoff:  rc.JoinGroupBackoff,
		StartOffset:       rc.StartOffset,
	}
	if err := gc.Validate(); err != nil {
		return fmt.Errorf("kafka consumer group config: %w", err)
	}
	return nil
}

func kafkaLogger(log *slog.Logger, level slog.Level) kafka.Logger {
	return kafka.LoggerFunc(func(format string, args ...any) {
		if log.Enabled(context.Background(), level) {
			log.Log(context.Background(), level, "kafka-go: "+strings.TrimSpace(fmt.Sprintf(format, args...)))
		}
	})
}

// consume runs one kafka-go Reader until it fails or ctx ends. Records fetched but not yet
// committed when it returns are delivered again to the next Reader (or to another member).
func (a *Archiver) consume(ctx context.Context, rc kafka.ReaderConfig, progressed func()) error {
	r := kafka.NewReader(rc)
	a.lag.reset()
	defer a.watchReader(a.cfg.SessionTimeout)()
	defer func() {
		if err := r.Close(); err != nil {
			a.log.Warn("archiver: closing kafka reader", "err", err)
		}
	}()
	batch := make([]kafka.Message, 0, a.cfg.BatchSize)
	for {
		var err error
		batch, err = a.fetchBatch(ctx, r, batch[:0])
		if err != nil {
			if ctx.Err() == nil {
				a.m.kafkaErrors.WithLabelValues("fetch").Inc()
			}
			return fmt.Errorf("fetch: %w", err)
		}
		if err := a.archive(ctx, r, batch); err != nil {
			return err
		}
		progressed()
	}
}

// fetchBatch waits for one record, then gathers more until the batch is full or BatchWait has
// passed since the first.
func (a *Archiver) fetchBatch(ctx context.Context, r *kafka.Reader, batch []kafka.Message) ([]kafka.Message, error) {
	m, err := r.FetchMessage(ctx)
	if err != nil {
		return nil, err
	}
	batch = append(batch, m)
	wait, cancel := context.WithTimeout(ctx, a.cfg.BatchWait)
	defer cancel()
	for len(batch) < a.cfg.BatchSize {
		m, err := r.FetchMessage(wait)
		if err != nil {
			if ctx.Err() == nil && wait.Err() != nil {
				break // the batch's time is up
			}
			return nil, err
		}
		batch = append(batch, m)
	}
	return batch, nil
}

// archive stores the valid records of batch and then commits the offsets of all of them,
// skipped ones included. It fails only when ctx ends before the rows are stored.
func (a *Archiver) archive(ctx context.Context, r *kafka.Reader, batch []kafka.Message) error {
	rows := make([]row, 0, len(batch))
	var maxTS int64
	for _, m := range batch {
		rw, reason, err := parseRecord(m)
		if err != nil {
			a.m.skipped.WithLabelValues(reason).Inc()
			a.log.Warn("archiver: skipping record", "reason", reason, "err", err,
				"partition", m.Partition, "offset", m.Offset, "key", truncate(m.Key, 128))
			continue
		}
		rows = append(rows, rw)
		maxTS = max(maxTS, rw.rec.TS)
	}
	a.lag.fetched(batch)

	stored, err := a.storeWithRetry(ctx, rows)
	if err != nil {
		return err
	}

	commitCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), commitTimeout)
	defer cancel()
	if err := r.CommitMessages(commitCtx, lastPerPartition(batch)...); err != nil {
		// The rows are stored, so a lost commit costs only their redelivery, which stores
		// nothing. Starting the Reader again would not help: a commit fails mostly in a
		// rebalance, and leaving and rejoining the group would set off another for every
		// member. A broker that is gone fails the next fetch, which does start again.
		a.m.kafkaErrors.WithLabelValues("commit").Inc()
		a.setKafkaErr(fmt.Errorf("commit offsets: %w", err))
		a.log.Warn("archiver: committing offsets failed; the batch will be delivered again", "err", err,
			"records", len(batch))
	} else {
		a.setKafkaErr(nil)
	}
	a.lag.archived(batch)

	archived := len(rows) - len(stored.rejected)
	a.m.records.Add(float64(archived))
	a.m.duplicates.Add(float64(archived - stored.inserted))
	a.m.skipped.WithLabelValues(reasonRejected).Add(float64(len(stored.rejected)))
	a.m.batches.Inc()
	if maxTS > 0 {
		a.m.lastRecordTS.Set(float64(maxTS) / 1000)
	}
	a.m.lastBatch.SetToCurrentTime()
	return nil
}

// storeWithRetry stores rows, retrying with backoff for as long as MySQL fails and ctx lasts. The
// group membership lives on meanwhile (kafka-go heartbeats on its own), so the batch is kept.
func (a *Archiver) storeWithRetry(ctx context.Context, rows []row) (storeResult, error) {
	for failures := 0; ; {
		res, err := a.store(ctx, rows)
		if err == nil {
			a.setStoreErr(nil)
			for _, rj := range res.rejected {
				a.log.Warn("archiver: skipping record the database refused", "err", rj.err,
					"id", rj.row.rec.ID, "partition", rj.row.partition, "offset", rj.row.offset)
			}
			return res, nil
		}
		if ctx.Err() != nil {
			return storeResult{}, ctx.Err()
		}
		failures++
		a.m.insertFailures.Inc()
		a.setStoreErr(fmt.Errorf("store batch: %w", err))
		wait := backoff(failures, a.cfg.MaxBackoff)
		a.log.Warn("archiver: storing batch failed; retrying", "err", err, "records", len(rows),
			"failures", failures, "retry_in", wait)
		if !sleep(ctx, wait) {
			return storeResult{}, ctx.Err()
		}
	}
}

func lastPerPartition(batch []kafka.Message) []kafka.Message {
	last := map[int]kafka.Message{}
	for _, m := range batch {
		if l, ok := last[m.Partition]; !ok || m.Offset > l.Offset {
			last[m.Partition] = m
		}
	}
	out := make([]kafka.Message, 0, len(last))
	for _, m := range last {
		out = append(out, m)
	}
	return out
}

// backoff is the wait after the n-th failure in a row (n ≥ 1): doubling from minBackoff up to
// maxWait, with up to a fifth taken off at random so that members do not retry in step.
func backoff(n int, maxWait time.Duration) time.Duration {
	d := minBackoff
	for i := 1; i < n && d < maxWait; i++ {
		d *= 2
	}
	d = min(d, maxWait)
	return d - rand.N(d/5+1)
}

func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

func truncate(b []byte, n int) string {
	if len(b) > n {
		return string(b[:n]) + "…"
	}
	return string(b)
}
