package archive

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/testenv"
	"github.com/heraldpush/herald/pkg/wire"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/segmentio/kafka-go"
)

const waitLong = 40 * time.Second

// makeRecords returns n records spread over uids users, as push-servers would write them.
func makeRecords(prefix string, n, uids int) []wire.UpstreamRecord {
	recs := make([]wire.UpstreamRecord, n)
	for i := range recs {
		uid := fmt.Sprintf("%s-user-%03d", prefix, i%uids)
		device := fmt.Sprintf("dev-%d", i%3)
		recs[i] = wire.UpstreamRecord{
			ID:     wire.UpstreamID(uid, device, strconv.Itoa(i)),
			UID:    uid,
			Device: device,
			ConnID: fmt.Sprintf("conn-%d", i%7),
			Node:   fmt.Sprintf("node-%d", i%2),
			TS:     1_700_000_000_000 + int64(i),
			Data:   json.RawMessage(fmt.Sprintf(`{"n":%d,"text":"hello %d"}`, i, i)),
		}
	}
	return recs
}

func messages(t testing.TB, recs []wire.UpstreamRecord) []kafka.Message {
	t.Helper()
	msgs := make([]kafka.Message, len(recs))
	for i, r := range recs {
		msgs[i] = recordMessage(t, r)
	}
	return msgs
}

func archived(a *running) int { return int(testutil.ToFloat64(a.m.records)) }

func duplicates(a *running) int { return int(testutil.ToFloat64(a.m.duplicates)) }

// TestArchivesEveryRecordOnce: 10,000 records from 100 users on the default topic all land in
// upstream_messages once, with their fields, partitions and offsets.
func TestArchivesEveryRecordOnce(t *testing.T) {
	t.Parallel()
	db := newDB(t)
	recs := makeRecords("a", 10_000, 100)
	produce(t, testKafka.Brokers, wire.UpstreamTopic, messages(t, recs))

	// Topic and GroupID left to their defaults; no other test reads the upstream topic.
	a := startArchiver(t, Config{Brokers: testKafka.Brokers}, db)
	eventually(t, waitLong, 50*time.Millisecond, func() (bool, string) {
		n := archived(a)
		return n == len(recs), fmt.Sprintf("%d records archived, %d rows", n, countRows(t, db))
	})
	checkRows(t, db, recs)

	// A user's records share one partition (key = uid), and each record has its own offset there.
	rows := loadRows(t, db)
	partitionOf := map[string]int{}
	offsets := map[[2]int64]bool{}
	for _, r := range rows {
		if p, ok := partitionOf[r.rec.UID]; ok && p != r.partition {
			t.Errorf("user %s has records in partitions %d and %d", r.rec.UID, p, r.partition)
		}
		partitionOf[r.rec.UID] = r.partition
		if r.partition < 0 || r.partition >= testenv.KafkaPartitions || r.offset < 0 {
			t.Errorf("record %s at partition %d offset %d", r.rec.ID, r.partition, r.offset)
		}
		key := [2]int64{int64(r.partition), r.offset}
		if offsets[key] {
			t.Errorf("two records at partition %d offset %d", r.partition, r.offset)
		}
		offsets[key] = true
	}

	if d := duplicates(a); d != 0 {
		t.Errorf("duplicates = %d, want 0", d)
	}
	if s := skippedByReason(a); totalSkipped(s) != 0 {
		t.Errorf("skipped = %v, want none", s)
	}
	if got := testutil.ToFloat64(a.m.lastRecordTS); got < 1_700_000_000 || got > 1_700_000_010 {
		t.Errorf("last record ts = %v, want about 1700000010", got)
	}
	eventually(t, waitLong, 50*time.Millisecond, func() (bool, string) {
		lag, parts := 0.0, testutil.CollectAndCount(a.m.lag)
		for p := range testenv.KafkaPartitions {
			lag += testutil.ToFloat64(a.m.lag.WithLabelValues(strconv.Itoa(p)))
		}
		return parts == testenv.KafkaPartitions && lag == 0, fmt.Sprintf("lag %v over %d partitions", lag, parts)
	})
	if err := a.Err(); err != nil {
		t.Errorf("Err() = %v after a clean run", err)
	}
}

// TestRestartMidStream: an archiver stopped halfway and a new one of the same group archive every
// record once between them; records produced twice with one id (resends) are stored once.
func TestRestartMidStream(t *testing.T) {
	t.Parallel()
	topic, group := unique("archive.restart"), unique("archive-restart")
	createTopic(t, testKafka.Brokers, topic, testenv.KafkaPartitions)
	db := newDB(t)

	recs := makeRecords("b", 10_000, 100)
	var msgs []kafka.Message
	repeats := 0
	for i, r := range recs {
		msgs = append(msgs, recordMessage(t, r))
		if i%50 == 49 { // a resend of a record sent a little earlier, 200 of them in all
			msgs = append(msgs, recordMessage(t, recs[i-25]))
			repeats++
		}
	}
	produce(t, testKafka.Brokers, topic, msgs)

	cfg := Config{Brokers: testKafka.Brokers, Topic: topic, GroupID: group, BatchSize: 100}
	first := startArchiver(t, cfg, db)
	eventually(t, waitLong, 5*time.Millisecond, func() (bool, string) {
		n := countRows(t, db)
		return n >= len(recs)/2, fmt.Sprintf("%d rows", n)
	})
	first.stop(t)
	t.Logf("first archiver stopped after archiving %d records (%d duplicates), %d rows stored",
		archived(first), duplicates(first), countRows(t, db))

	second := startArchiver(t, cfg, db)
	eventually(t, waitLong, 50*time.Millisecond, func() (bool, string) {
		n := archived(first) + archived(second)
		return n >= len(msgs), fmt.Sprintf("%d of %d records archived, %d rows", n, len(msgs), countRows(t, db))
	})
	t.Logf("second archiver archived %d records (%d duplicates)", archived(second), duplicates(second))
	checkRows(t, db, recs)

	inserted := archived(first) - duplicates(first) + archived(second) - duplicates(second)
	if inserted != len(recs) {
		t.Errorf("%d rows inserted between the two archivers, want %d", inserted, len(recs))
	}
	if d := duplicates(first) + duplicates(second); d < repeats {
		t.Errorf("%d duplicates seen, want at least the %d repeats", d, repeats)
	}
	// The second archiver resumed from the first one's committed offsets.
	if archived(first) == 0 || archived(second) >= len(msgs) {
		t.Errorf("first archived %d, second %d of %d: the second did not resume where the first committed",
			archived(first), archived(second), len(msgs))
	}
}

// TestTwoMembersShareTheTopic: a second archiver joining the group takes over some partitions in a
// rebalance while records keep coming; between them every record is stored once.
func TestTwoMembersShareTheTopic(t *testing.T) {
	t.Parallel()
	topic, group := unique("archive.shared"), unique("archive-shared")
	createTopic(t, testKafka.Brokers, topic, testenv.KafkaPartitions)
	db := newDB(t)
	cfg := Config{Brokers: testKafka.Brokers, Topic: topic, GroupID: group, BatchSize: 50}

	recs := makeRecords("g", 20_000, 100)
	sent := 0
	send := func(n int) {
		produce(t, testKafka.Brokers, topic, messages(t, recs[sent:sent+n]))
		sent += n
	}
	send(1000)
	first := startArchiver(t, cfg, db)
	eventually(t, waitLong, 20*time.Millisecond, func() (bool, string) {
		return archived(first) > 0, "first archiver archived nothing"
	})
	second := startArchiver(t, cfg, db)
	joined := time.Now()
	eventually(t, waitLong, 0, func() (bool, string) {
		if sent+100 <= len(recs) {
			send(100)
		}
		return archived(second) > 0, fmt.Sprintf("second archiver archived nothing of %d sent", sent)
	})
	t.Logf("second archiver archived its first record %v after it started", time.Since(joined).Round(time.Millisecond))
	send(1000)
	eventually(t, waitLong, 50*time.Millisecond, func() (bool, string) {
		n := archived(first) - duplicates(first) + archived(second) - duplicates(second)
		return n == sent, fmt.Sprintf("%d of %d records inserted", n, sent)
	})
	t.Logf("first archived %d (%d duplicates), second %d (%d duplicates)",
		archived(first), duplicates(first), archived(second), duplicates(second))
	checkRows(t, db, recs[:sent])
}

// TestSkipsMalformedRecords: records that are not upstream records, or do not fit the table, are
// counted and committed past; the records after them are archived.
func TestSkipsMalformedRecords(t *testing.T) {
	t.Parallel()
	topic, group := unique("archive.malformed"), unique("archive-malformed")
	createTopic(t, testKafka.Brokers, topic, 1) // one partition: "after" is well defined
	db := newDB(t)

	good := makeRecords("c", 4, 1)
	noData := good[2]
	noData.Data = nil
	raw := func(v string) kafka.Message { return kafka.Message{Key: []byte("c-user-000"), Value: []byte(v)} }
	long := good[0]
	long.ID, long.UID = "long-uid", strings.Repeat("u", maxUIDLen+1)
	nonASCII := good[0]
	nonASCII.ID = "ïd"
	msgs := []kafka.Message{
		recordMessage(t, good[0]),
		raw(`not json`),
		raw(`{"id":"x","uid":`),
		raw(`"a string"`),
		raw(`[1,2]`),
		raw(``),
		raw(`{"uid":"c-user-000","data":1}`),
		raw(`{"id":"only-id"}`),
		raw(`null`),
		raw(`{"id":"x","uid":"y","ts":"not a number"}`),
		recordMessage(t, long),
		recordMessage(t, nonASCII),
		recordMessage(t, good[1]),
		recordMessage(t, noData),
	}
	produce(t, testKafka.Brokers, topic, msgs)

	cfg := Config{Brokers: testKafka.Brokers, Topic: topic, GroupID: group}
	a := startArchiver(t, cfg, db)
	want := map[string]int{reasonBadJSON: 6, reasonMissingField: 3, reasonBadField: 2, reasonRejected: 0}
	eventually(t, waitLong, 50*time.Millisecond, func() (bool, string) {
		return archived(a) == 3, fmt.Sprintf("%d archived, %v skipped", archived(a), skippedByReason(a))
	})
	if got := skippedByReason(a); !equalCounts(got, want) {
		t.Errorf("skipped %v, want %v", got, want)
	}
	noData.Data = json.RawMessage("null")
	checkRows(t, db, []wire.UpstreamRecord{good[0], good[1], noData})

	// Close stops Run, and the offsets committed are past the malformed records: the next
	// archiver of the group starts after them and skips nothing.
	if err := a.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-a.done; err != nil {
		t.Fatalf("Run returned %v after Close", err)
	}
	close(a.done)
	if err := a.Run(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Run after Close = %v, want ErrClosed", err)
	}
	b := startArchiver(t, cfg, db)
	produce(t, testKafka.Brokers, topic, []kafka.Message{recordMessage(t, good[3])})
	eventually(t, waitLong, 50*time.Millisecond, func() (bool, string) {
		return archived(b) >= 1, fmt.Sprintf("%d archived", archived(b))
	})
	if archived(b) != 1 || totalSkipped(skippedByReason(b)) != 0 {
		t.Errorf("the next archiver archived %d and skipped %v, want 1 and none", archived(b), skippedByReason(b))
	}
	checkRows(t, db, []wire.UpstreamRecord{good[0], good[1], noData, good[3]})
}

func skippedByReason(a *running) map[string]int {
	out := map[string]int{}
	for _, r := range skipReasons {
		out[r] = int(testutil.ToFloat64(a.m.skipped.WithLabelValues(r)))
	}
	return out
}

func totalSkipped(byReason map[string]int) int {
	n := 0
	for _, v := range byReason {
		n += v
	}
	return n
}

func equalCounts(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestSurvivesKafkaOutage: the archiver rides out its broker going away and coming back (kfake
// comes back empty: new records, no committed offsets).
func TestSurvivesKafkaOutage(t *testing.T) {
	t.Parallel()
	const topic = "archive.outage"
	k := testenv.NewKafka(t, topic) // its own broker, as restarting it loses everything
	db := newDB(t)

	before := makeRecords("d1", 100, 10)
	produce(t, k.Brokers, topic, messages(t, before))
	a := startArchiver(t, Config{Brokers: k.Brokers, Topic: topic, GroupID: "archive-outage", MaxBackoff: time.Second}, db)
	eventually(t, waitLong, 50*time.Millisecond, func() (bool, string) {
		return archived(a) == len(before), fmt.Sprintf("%d archived", archived(a))
	})

	if err := k.Stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitLong, 50*time.Millisecond, func() (bool, string) {
		return a.Err() != nil, "Err() still nil with the broker down"
	})
	t.Logf("while Kafka is down: %v", a.Err())
	if err := k.Restart(testContext(t, 10*time.Second)); err != nil {
		t.Fatal(err)
	}
	// Healthy again before any record arrives: the consumer has run a session timeout unharmed.
	eventually(t, waitLong, 50*time.Millisecond, func() (bool, string) {
		return a.Err() == nil, fmt.Sprintf("Err() = %v after Kafka came back", a.Err())
	})
	after := makeRecords("d2", 100, 10)
	produce(t, k.Brokers, topic, messages(t, after))
	eventually(t, waitLong, 50*time.Millisecond, func() (bool, string) {
		return countRows(t, db) == len(before)+len(after), fmt.Sprintf("%d rows", countRows(t, db))
	})
	checkRows(t, db, append(before, after...))
}

// TestRetriesWhenMySQLFails: a batch that cannot be stored is counted, kept and tried again until
// it is, and only then committed.
func TestRetriesWhenMySQLFails(t *testing.T) {
	t.Parallel()
	topic, group := unique("archive.mysql"), unique("archive-mysql")
	createTopic(t, testKafka.Brokers, topic, testenv.KafkaPartitions)
	db := newDB(t)
	ctx := testContext(t, time.Minute)
	if _, err := db.ExecContext(ctx, "RENAME TABLE upstream_messages TO upstream_hidden"); err != nil {
		t.Fatal(err)
	}

	recs := makeRecords("e", 50, 5)
	produce(t, testKafka.Brokers, topic, messages(t, recs))
	a := startArchiver(t, Config{Brokers: testKafka.Brokers, Topic: topic, GroupID: group, MaxBackoff: 500 * time.Millisecond}, db)
	eventually(t, waitLong, 50*time.Millisecond, func() (bool, string) {
		n := testutil.ToFloat64(a.m.insertFailures)
		return n >= 2 && a.Err() != nil, fmt.Sprintf("%v insert failures, Err() = %v", n, a.Err())
	})
	if archived(a) != 0 {
		t.Fatalf("%d archived while the table is missing", archived(a))
	}
	if _, err := db.ExecContext(ctx, "RENAME TABLE upstream_hidden TO upstream_messages"); err != nil {
		t.Fatal(err)
	}
	eventually(t, waitLong, 50*time.Millisecond, func() (bool, string) {
		return archived(a) == len(recs), fmt.Sprintf("%d archived", archived(a))
	})
	checkRows(t, db, recs)
	if err := a.Err(); err != nil {
		t.Errorf("Err() = %v after the batch was stored", err)
	}
}

// TestRejectedRowIsSkipped: a row MySQL refuses although it passed the checks (here, a column
// narrowed after the fact) is skipped alone; the rest of its batch is stored.
func TestRejectedRowIsSkipped(t *testing.T) {
	t.Parallel()
	topic, group := unique("archive.rejected"), unique("archive-rejected")
	createTopic(t, testKafka.Brokers, topic, 1)
	db := newDB(t)
	if _, err := db.ExecContext(testContext(t, time.Minute),
		"ALTER TABLE upstream_messages MODIFY node VARCHAR(8) CHARACTER SET ascii COLLATE ascii_bin NOT NULL"); err != nil {
		t.Fatal(err)
	}
	recs := makeRecords("f", 5, 1)
	recs[2].Node = "a-node-name-too-long-now"
	produce(t, testKafka.Brokers, topic, messages(t, recs))
	a := startArchiver(t, Config{Brokers: testKafka.Brokers, Topic: topic, GroupID: group}, db)
	eventually(t, waitLong, 50*time.Millisecond, func() (bool, string) {
		return archived(a) == 4, fmt.Sprintf("%d archived, %v skipped", archived(a), skippedByReason(a))
	})
	if got := skippedByReason(a)[reasonRejected]; got != 1 {
		t.Errorf("rejected = %d, want 1", got)
	}
	checkRows(t, db, []wire.UpstreamRecord{recs[0], recs[1], recs[3], recs[4]})
}

func TestRunRefusesBadConfig(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no brokers", Config{}},
		{"session timeout out of bounds", Config{Brokers: []string{"127.0.0.1:1"}, SessionTimeout: 1 << 62}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a := New(tt.cfg, nil, nil)
			if err := a.Run(testContext(t, 10*time.Second)); err == nil {
				t.Fatal("Run accepted the config")
			}
			if err := a.Close(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestParseRecord(t *testing.T) {
	ok := `{"id":"i","uid":"u","device":"d","conn_id":"c","node":"n","ts":5,"data":{"x":[1]}}`
	tests := []struct {
		name, value, reason string
	}{
		{"complete", ok, ""},
		{"unknown fields kept out", `{"id":"i","uid":"u","later":true}`, ""},
		{"no data", `{"id":"i","uid":"u"}`, ""},
		{"not json", `}{`, reasonBadJSON},
		{"empty", ``, reasonBadJSON},
		{"array", `[]`, reasonBadJSON},
		{"wrong type", `{"id":1,"uid":"u"}`, reasonBadJSON},
		{"null", `null`, reasonMissingField},
		{"no id", `{"uid":"u"}`, reasonMissingField},
		{"no uid", `{"id":"i"}`, reasonMissingField},
		{"long id", `{"id":"` + strings.Repeat("i", maxIDLen+1) + `","uid":"u"}`, reasonBadField},
		{"longest id", `{"id":"` + strings.Repeat("i", maxIDLen) + `","uid":"u"}`, ""},
		{"long conn_id", `{"id":"i","uid":"u","conn_id":"` + strings.Repeat("c", maxConnIDLen+1) + `"}`, reasonBadField},
		{"control character", `{"id":"i\n","uid":"u"}`, reasonBadField},
		{"non-ASCII device", `{"id":"i","uid":"u","device":"ü"}`, reasonBadField},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rw, reason, err := parseRecord(kafka.Message{Value: []byte(tt.value), Partition: 2, Offset: 7})
			if reason != tt.reason || (err != nil) != (tt.reason != "") {
				t.Fatalf("reason %q, err %v; want reason %q", reason, err, tt.reason)
			}
			if err == nil && (rw.partition != 2 || rw.offset != 7 || len(rw.rec.Data) == 0) {
				t.Errorf("row %+v", rw)
			}
		})
	}
}

func TestStatementRows(t *testing.T) {
	small := row{rec: wire.UpstreamRecord{ID: "i", UID: "u", Data: json.RawMessage(`1`)}}
	big := row{rec: wire.UpstreamRecord{ID: "i", UID: "u", Data: make(json.RawMessage, maxStatementBytes)}}
	many := make([]row, maxRowsPerStatement+10)
	for i := range many {
		many[i] = small
	}
	tests := []struct {
		name string
		rows []row
		want int
	}{
		{"few", many[:3], 3},
		{"row limit", many, maxRowsPerStatement},
		{"one big row alone", []row{big, small}, 1},
		{"big row after small ones", []row{small, small, big}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := statementRows(tt.rows); got != tt.want {
				t.Errorf("statementRows = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestBackoff(t *testing.T) {
	for n := 1; n < 20; n++ {
		d := backoff(n, 3*time.Second)
		if d <= 0 || d > 3*time.Second {
			t.Errorf("backoff(%d) = %v", n, d)
		}
	}
	if d := backoff(1, time.Minute); d > minBackoff {
		t.Errorf("first backoff %v, want at most %v", d, minBackoff)
	}
}
