// Package upstream hands devices' messages to Kafka and tells the caller, per message, when Kafka has
// acknowledged it (from all in-sync replicas) or that it failed, so the device gets up_ack only for
// what is safe.
package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/heraldpush/herald/pkg/wire"
)

// ErrTimeout means Kafka did not answer within the publish timeout; the message may or may not be
// stored, and the device resends it under the same ref (its id is derived from the ref, so a consumer
// sees one id).
var ErrTimeout = errors.New("kafka did not acknowledge in time")

// Config sets up the producer.
type Config struct {
	Brokers      []string
	Topic        string        // default wire.UpstreamTopic
	BatchSize    int           // records per produce request (default 200)
	BatchTimeout time.Duration // longest a record waits for its batch to fill (default 2ms)
	Timeout      time.Duration // longest a publish waits for Kafka (default 5s)
	Logger       *slog.Logger
}

// Producer publishes upstream records asynchronously. Records with the same key (uid) go to one
// partition in the order published, which is the ordering guarantee consumers get.
type Producer struct {
	w       *kafka.Writer
	brokers []string
	timeout time.Duration
	logger  *slog.Logger
}

// New returns a producer for cfg. It connects lazily, on the first publish.
func New(cfg Config) *Producer {
	if cfg.Topic == "" {
		cfg.Topic = wire.UpstreamTopic
	}
	if cfg.BatchSize <= 0 {
		cfg.BatchSize = 200
	}
	if cfg.BatchTimeout <= 0 {
		cfg.BatchTimeout = 2 * time.Millisecond
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	p := &Producer{brokers: cfg.Brokers, timeout: cfg.Timeout, logger: cfg.Logger}
	p.w = &kafka.Writer{
		Addr:         kafka.TCP(cfg.Brokers...),
		Topic:        cfg.Topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchSize:    cfg.BatchSize,
		BatchTimeout: cfg.BatchTimeout,
		WriteTimeout: cfg.Timeout,
		ReadTimeout:  cfg.Timeout,
		MaxAttempts:  3,
		Async:        true,
		Completion:   complete,
	}
	return p
}

// pending is one publish waiting for its completion; once guards against the timeout and Kafka's
// answer both reporting.
type pending struct {
	once sync.Once
	done func(error)
}

func (pd *pending) finish(err error) { pd.once.Do(func() { pd.done(err) }) }

func complete(msgs []kafka.Message, err error) {
	for _, m := range msgs {
		if pd, ok := m.WriterData.(*pending); ok {
			pd.finish(err)
		}
	}
}

// Publish hands rec to Kafka. done is called exactly once, from another goroutine: with nil once
// Kafka acknowledged the record, or with an error (ErrTimeout after the configured timeout).
func (p *Producer) Publish(rec wire.UpstreamRecord, done func(error)) {
	value, err := json.Marshal(rec)
	if err != nil {
		done(fmt.Errorf("encode record: %w", err))
		return
	}
	pd := &pending{done: done}
	timer := time.AfterFunc(p.timeout+time.Second, func() { pd.finish(ErrTimeout) })
	pd.done = func(err error) {
		timer.Stop()
		done(err)
	}
	// With Async set, WriteMessages only queues; its error is about the call itself.
	if err := p.w.WriteMessages(context.Background(), kafka.Message{Key: []byte(rec.UID), Value: value, WriterData: pd}); err != nil {
		pd.finish(err)
	}
}

// Close flushes queued records (their done functions run) and closes the connections.
func (p *Producer) Close() error { return p.w.Close() }

// Stats are the writer's counters, for metrics.
func (p *Producer) Stats() kafka.WriterStats { return p.w.Stats() }

// Ping checks that a broker answers, for /readyz.
func (p *Producer) Ping(ctx context.Context) error {
	var d kafka.Dialer
	var lastErr error
	for _, addr := range p.brokers {
		conn, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			conn.Close()
			return nil
		}
		lastErr = err
	}
	return lastErr
}
