package archive

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/heraldpush/herald/pkg/mysqldb"
	"github.com/heraldpush/herald/pkg/testenv"
	"github.com/heraldpush/herald/pkg/wire"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"
)

// The servers every test of the package shares: one kfake broker with the upstream topic seeded,
// and one MariaDB in which each test makes its own database.
var (
	testKafka *testenv.Kafka
	testMySQL *testenv.MySQL
)

func TestMain(m *testing.M) {
	testenv.Main(m, func(g *testenv.Group) error {
		var err error
		if testKafka, err = g.Kafka(wire.UpstreamTopic); err != nil {
			return err
		}
		testMySQL, err = g.MySQL()
		return err
	})
}

func testContext(t testing.TB, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func testLogger(t testing.TB) *slog.Logger {
	t.Helper()
	if testing.Verbose() || os.Getenv("ARCHIVE_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

var seq atomic.Int64

// unique makes topic and group names unique within the test binary, which -count=N runs again
// against the same broker.
func unique(name string) string { return fmt.Sprintf("%s.%d", name, seq.Add(1)) }

// newDB makes a fresh database with the schema migrated, so that tests do not see each other's rows.
func newDB(t testing.TB) *sql.DB {
	t.Helper()
	ctx := testContext(t, time.Minute)
	name := fmt.Sprintf("archive_test_%d", seq.Add(1))
	root, err := mysqldb.Open(ctx, testMySQL.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	if _, err := root.ExecContext(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatal(err)
	}
	cfg, err := mysql.ParseDSN(testMySQL.DSN)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DBName = name
	db, err := mysqldb.Open(ctx, cfg.FormatDSN())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := mysqldb.Migrate(ctx, db, testLogger(t)); err != nil {
		t.Fatal(err)
	}
	return db
}

// createTopic creates a topic on the shared broker.
func createTopic(t testing.TB, brokers []string, name string, partitions int) {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(brokers...), Timeout: 10 * time.Second}
	resp, err := c.CreateTopics(testContext(t, 10*time.Second), &kafka.CreateTopicsRequest{
		Topics: []kafka.TopicConfig{{Topic: name, NumPartitions: partitions, ReplicationFactor: 1}},
	})
	if err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
	if err := resp.Errors[name]; err != nil {
		t.Fatalf("create topic %s: %v", name, err)
	}
}

// produce writes msgs to topic, keyed as given, and returns once the broker acknowledged all of them.
func produce(t testing.TB, brokers []string, topic string, msgs []kafka.Message) {
	t.Helper()
	w := &kafka.Writer{
		Addr:         kafka.TCP(brokers...),
		Topic:        topic,
		Balancer:     &kafka.Hash{},
		RequiredAcks: kafka.RequireAll,
		BatchSize:    500,
		BatchTimeout: 5 * time.Millisecond,
	}
	defer w.Close()
	if err := w.WriteMessages(testContext(t, 30*time.Second), msgs...); err != nil {
		t.Fatalf("produce %d records to %s: %v", len(msgs), topic, err)
	}
}

// recordMessage is rec as the push-server writes it: JSON value, key uid.
func recordMessage(t testing.TB, rec wire.UpstreamRecord) kafka.Message {
	t.Helper()
	v, err := json.Marshal(rec)
	if err != nil {
		t.Fatal(err)
	}
	return kafka.Message{Key: []byte(rec.UID), Value: v}
}

// running is an Archiver running in the background.
type running struct {
	*Archiver
	cancel context.CancelFunc
	done   chan error
}

func startArchiver(t testing.TB, cfg Config, db *sql.DB) *running {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	a := New(cfg, db, prometheus.NewRegistry())
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Archiver: a, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- a.Run(ctx) }()
	t.Cleanup(func() { r.stop(t) })
	return r
}

// stop cancels Run and waits for it to return nil. It may be called more than once.
func (r *running) stop(t testing.TB) {
	t.Helper()
	r.cancel()
	select {
	case err, ok := <-r.done:
		if ok && err != nil {
			t.Errorf("Run: %v", err)
		}
		if ok {
			close(r.done)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not return within 30s of its context ending")
	}
}

// eventually polls cond until it holds, failing the test with cond's last word after timeout.
func eventually(t testing.TB, timeout, every time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %v: %s", timeout, msg)
		}
		time.Sleep(every)
	}
}

func countRows(t testing.TB, db *sql.DB) int {
	t.Helper()
	var n int
	if err := db.QueryRowContext(testContext(t, 10*time.Second), "SELECT COUNT(*) FROM upstream_messages").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

type storedRow struct {
	rec       wire.UpstreamRecord
	partition int
	offset    int64
}

func loadRows(t testing.TB, db *sql.DB) map[string]storedRow {
	t.Helper()
	rows, err := db.QueryContext(testContext(t, 30*time.Second),
		"SELECT id, uid, device, conn_id, node, ts, data, kafka_partition, kafka_offset FROM upstream_messages")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]storedRow{}
	for rows.Next() {
		var r storedRow
		var data []byte
		if err := rows.Scan(&r.rec.ID, &r.rec.UID, &r.rec.Device, &r.rec.ConnID, &r.rec.Node, &r.rec.TS, &data,
			&r.partition, &r.offset); err != nil {
			t.Fatal(err)
		}
		r.rec.Data = data
		if _, dup := out[r.rec.ID]; dup {
			t.Fatalf("id %s stored twice", r.rec.ID)
		}
		out[r.rec.ID] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// checkRows fails unless the table holds exactly want, field for field.
func checkRows(t testing.TB, db *sql.DB, want []wire.UpstreamRecord) {
	t.Helper()
	got := loadRows(t, db)
	if len(got) != len(want) {
		t.Errorf("%d rows stored, want %d", len(got), len(want))
	}
	bad := 0
	for _, w := range want {
		g, ok := got[w.ID]
		switch {
		case !ok:
			t.Errorf("record %s not stored", w.ID)
		case g.rec.UID != w.UID || g.rec.Device != w.Device || g.rec.ConnID != w.ConnID ||
			g.rec.Node != w.Node || g.rec.TS != w.TS || string(g.rec.Data) != string(w.Data):
			t.Errorf("record %s stored as %+v (data %s), want %+v (data %s)", w.ID, g.rec, g.rec.Data, w, w.Data)
		default:
			continue
		}
		if bad++; bad == 10 {
			t.Fatal("giving up after 10 wrong records")
		}
	}
}
