package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/segmentio/kafka-go"

	"github.com/heraldpush/herald/pkg/client"
	"github.com/heraldpush/herald/pkg/testenv"
	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/services/admin/internal/archive"
)

// TestUpstreamEndToEnd: 10,000 upstream messages from 100 connections all arrive in Kafka and in
// upstream_messages exactly once, also when the archiver is stopped and restarted halfway.
//
// The admin that TestMain runs archives the same topic in its own group (herald-archiver) into the
// same table. Both archivers writing the same rows is harmless, since the table is unique on id, and
// that is the point; so the test counts only rows of its own uids, and it checks that its own group
// committed past every record, which an archiver does only after the records are stored.
func TestUpstreamEndToEnd(t *testing.T) {
	const (
		clients          = 100
		perClient        = 100
		sendersPerClient = 10 // concurrent Sends per client, below the server's -max-up-inflight of 32
		total            = clients * perClient
	)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	prefix := fmt.Sprintf("e2e-%d-", time.Now().UnixNano())
	group := prefix + "archiver"
	base := topicEnd(t, ctx)

	// Who sent what: uid i is device "dev-i" on node A (even i) or B (odd i).
	type sender struct {
		uid, device string
		node        *pushServer
	}
	senders := make([]sender, clients)
	byUID := map[string]int{}
	for i := range senders {
		node := nodeA
		if i%2 == 1 {
			node = nodeB
		}
		senders[i] = sender{uid: fmt.Sprintf("%su%03d", prefix, i), device: fmt.Sprintf("dev-%d", i), node: node}
		byUID[senders[i].uid] = i
	}
	dataOf := func(n int) string { return fmt.Sprintf(`{"n":%d}`, n) }
	mine := func(uid string) bool { return strings.HasPrefix(uid, prefix) }

	// The Kafka side: a reader of its own group, from the start of the topic, until it has seen
	// as many distinct ids of these uids as messages are sent.
	type kafkaResult struct {
		records map[string]wire.UpstreamRecord // by id
		dups    int                            // records of an id seen before (resends)
		err     error
	}
	kafkaDone := make(chan kafkaResult, 1)
	go func() {
		res := kafkaResult{records: map[string]wire.UpstreamRecord{}}
		defer func() { kafkaDone <- res }()
		r := kafka.NewReader(kafka.ReaderConfig{
			Brokers:           env.kafka.Brokers,
			Topic:             wire.UpstreamTopic,
			GroupID:           prefix + "reader",
			StartOffset:       kafka.FirstOffset,
			HeartbeatInterval: 500 * time.Millisecond,
			SessionTimeout:    6 * time.Second,
			RebalanceTimeout:  5 * time.Second,
			JoinGroupBackoff:  200 * time.Millisecond,
			MaxWait:           500 * time.Millisecond,
		})
		defer r.Close()
		for len(res.records) < total {
			m, err := r.FetchMessage(ctx) // no commits: this group only reads
			if err != nil {
				res.err = fmt.Errorf("after %d ids: %w", len(res.records), err)
				return
			}
			var rec wire.UpstreamRecord
			if err := json.Unmarshal(m.Value, &rec); err != nil {
				if mine(string(m.Key)) {
					res.err = fmt.Errorf("record at %d/%d: %w", m.Partition, m.Offset, err)
					return
				}
				continue
			}
			if !mine(rec.UID) {
				continue
			}
			if string(m.Key) != rec.UID {
				res.err = fmt.Errorf("record %s of uid %s has key %q", rec.ID, rec.UID, m.Key)
				return
			}
			if prev, ok := res.records[rec.ID]; ok {
				res.dups++
				if prev.UID != rec.UID || prev.Device != rec.Device || string(prev.Data) != string(rec.Data) {
					res.err = fmt.Errorf("two records with id %s differ: %+v (data %s) and %+v (data %s)",
						rec.ID, prev, prev.Data, rec, rec.Data)
					return
				}
				continue
			}
			res.records[rec.ID] = rec
		}
	}()

	first := startE2EArchiver(t, group)

	// 100 clients, each with a fixed token for its node, each sending 100 messages over 10
	// goroutines at once.
	runCtx, stopClients := context.WithCancel(context.Background())
	var running, sending sync.WaitGroup
	defer func() {
		cancel()
		stopClients()
		sending.Wait()
		running.Wait()
	}()
	ids := make([][]string, clients) // ids[i][n]: the id acked for message n of sender i
	started := time.Now()
	for i, s := range senders {
		tok, _, err := signer.Sign(s.uid, s.device)
		if err != nil {
			t.Fatal(err)
		}
		c := client.New(client.Config{Token: tok, WSURL: s.node.wsURL, UID: s.uid, Device: s.device})
		running.Add(1)
		go func() {
			defer running.Done()
			if err := c.Run(runCtx); err != nil && ctx.Err() == nil {
				t.Errorf("client %s: Run: %v", s.uid, err)
			}
		}()
		ids[i] = make([]string, perClient)
		for g := range sendersPerClient {
			sending.Add(1)
			go func() {
				defer sending.Done()
				for n := g; n < perClient; n += sendersPerClient {
					id, err := c.Send(ctx, json.RawMessage(dataOf(n)))
					if err != nil {
						if ctx.Err() == nil { // else the test is over already
							t.Errorf("client %s: send %d: %v", s.uid, n, err)
						}
						return
					}
					ids[i][n] = id
				}
			}()
		}
	}
	sent := make(chan struct{})
	go func() {
		sending.Wait()
		close(sent)
	}()

	// Halfway, measured by the first archiver itself (its records counter includes records on the
	// topic from before this test), stop it and start another of the same group.
	half := sumOffsets(base) + total/2
	for waitSent := sent; first.archived(t) < half; {
		select {
		case <-waitSent:
			if t.Failed() {
				t.FailNow()
			}
			waitSent = nil
		case <-ctx.Done():
			t.Fatalf("the first archiver archived %d records, not %d, before the deadline; %d rows of these uids",
				first.archived(t), half, countUpstream(t, prefix))
		case <-time.After(20 * time.Millisecond):
		}
	}
	first.stop(t)
	firstArchived := first.archived(t)
	t.Logf("first archiver stopped after %d records (%d before this test), %v after sending began; %d rows of these uids",
		firstArchived, sumOffsets(base), time.Since(started).Round(time.Millisecond), countUpstream(t, prefix))
	second := startE2EArchiver(t, group)

	select {
	case <-sent:
	case <-ctx.Done():
		t.Fatal("sends not finished before the deadline")
	}
	if t.Failed() {
		t.FailNow()
	}
	elapsed := time.Since(started)
	t.Logf("%d messages acked in %v (%.0f/s)", total, elapsed.Round(time.Millisecond), total/elapsed.Seconds())

	// Every message acked, each with its own id.
	type message struct{ sender, n int }
	acked := make(map[string]message, total)
	for i := range ids {
		for n, id := range ids[i] {
			if prev, dup := acked[id]; dup {
				t.Fatalf("id %s acked for message %d of %s and message %d of %s",
					id, n, senders[i].uid, prev.n, senders[prev.sender].uid)
			}
			acked[id] = message{sender: i, n: n}
		}
	}
	check := func(where string, rec wire.UpstreamRecord) error {
		m, ok := acked[rec.ID]
		switch {
		case !ok:
			return fmt.Errorf("%s: id %s (uid %s, data %s) was never acked", where, rec.ID, rec.UID, rec.Data)
		case rec.UID != senders[m.sender].uid || rec.Device != senders[m.sender].device ||
			string(rec.Data) != dataOf(m.n) || rec.Node != senders[m.sender].node.id || rec.ConnID == "" || rec.TS <= 0:
			return fmt.Errorf("%s: id %s is %+v (data %s), want uid %s device %s node %s data %s",
				where, rec.ID, rec, rec.Data, senders[m.sender].uid, senders[m.sender].device,
				senders[m.sender].node.id, dataOf(m.n))
		}
		return nil
	}

	// Kafka holds every acked id, and nothing else of these uids.
	var kres kafkaResult
	select {
	case kres = <-kafkaDone:
	case <-ctx.Done():
		t.Fatal("kafka reader not done before the deadline")
	}
	if kres.err != nil {
		t.Fatalf("reading the topic: %v", kres.err)
	}
	if len(kres.records) != total {
		t.Fatalf("%d distinct ids of these uids in Kafka, want %d", len(kres.records), total)
	}
	bad := 0
	for _, rec := range kres.records {
		if err := check("kafka", rec); err != nil {
			t.Error(err)
			if bad++; bad == 10 {
				t.FailNow()
			}
		}
	}
	end := topicEnd(t, ctx)
	produced := sumOffsets(end) - sumOffsets(base)
	t.Logf("Kafka: %d records produced during the test, %d resends of these uids seen by the reader", produced, kres.dups)

	// The archive group (first, then second) commits past every record on the topic now, which it
	// does only once they are stored; and the table holds exactly the acked ids of these uids.
	waitCommitted(t, ctx, group, end)
	rows := loadUpstream(t, prefix)
	if len(rows) != total {
		t.Errorf("%d rows of these uids, want %d", len(rows), total)
	}
	for _, rec := range rows {
		if err := check("upstream_messages", rec); err != nil {
			t.Error(err)
			if bad++; bad == 10 {
				t.FailNow()
			}
		}
	}
	for id := range acked {
		if _, ok := rows[id]; !ok {
			t.Errorf("acked id %s not archived", id)
			if bad++; bad == 10 {
				t.FailNow()
			}
		}
	}

	// The second archiver resumed where the first committed rather than from the start.
	secondArchived := second.archived(t)
	t.Logf("second archiver archived %d records; the topic holds %d", secondArchived, sumOffsets(end))
	if secondArchived == 0 || secondArchived >= sumOffsets(end) {
		t.Errorf("the second archiver archived %d of the topic's %d records: it did not resume after the first's %d",
			secondArchived, sumOffsets(end), firstArchived)
	}
}

// e2eArchiver is an archiver of the upstream topic running in the background, with its own metrics.
type e2eArchiver struct {
	a    *archive.Archiver
	reg  *prometheus.Registry
	done chan error
}

// startE2EArchiver starts an archiver of group on the shared broker and database; it is closed when
// the test ends, if not before.
func startE2EArchiver(t testing.TB, group string) *e2eArchiver {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	e := &e2eArchiver{reg: prometheus.NewRegistry(), done: make(chan error, 1)}
	e.a = archive.New(archive.Config{
		Brokers: env.kafka.Brokers,
		Topic:   wire.UpstreamTopic,
		GroupID: group,
		Logger:  logger,
	}, testDB, e.reg)
	go func() { e.done <- e.a.Run(context.Background()) }()
	t.Cleanup(func() { e.stop(t) })
	return e
}

// stop closes the archiver and checks that Run returned nil. It may be called more than once.
func (e *e2eArchiver) stop(t testing.TB) {
	t.Helper()
	e.a.Close()
	select {
	case err, ok := <-e.done:
		if ok {
			close(e.done)
			if err != nil {
				t.Errorf("archiver Run: %v", err)
			}
		}
	case <-time.After(30 * time.Second):
		t.Fatal("archiver Run still running 30s after Close")
	}
}

// archived is the archiver's count of records archived (stored, or found stored already).
func (e *e2eArchiver) archived(t testing.TB) int {
	t.Helper()
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "herald_archive_records_total" && len(mf.GetMetric()) == 1 {
			return int(mf.GetMetric()[0].GetCounter().GetValue())
		}
	}
	t.Fatal("no herald_archive_records_total metric")
	return 0
}

// topicEnd is the offset after the last record of each partition of the upstream topic.
func topicEnd(t testing.TB, ctx context.Context) map[int]int64 {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(env.kafka.Brokers...), Timeout: 10 * time.Second}
	var reqs []kafka.OffsetRequest
	for p := range testenv.KafkaPartitions {
		reqs = append(reqs, kafka.LastOffsetOf(p))
	}
	resp, err := c.ListOffsets(ctx, &kafka.ListOffsetsRequest{Topics: map[string][]kafka.OffsetRequest{wire.UpstreamTopic: reqs}})
	if err != nil {
		t.Fatalf("list offsets: %v", err)
	}
	end := map[int]int64{}
	for _, po := range resp.Topics[wire.UpstreamTopic] {
		if po.Error != nil {
			t.Fatalf("list offsets of partition %d: %v", po.Partition, po.Error)
		}
		end[po.Partition] = po.LastOffset
	}
	if len(end) != testenv.KafkaPartitions {
		t.Fatalf("offsets of %d partitions listed, want %d", len(end), testenv.KafkaPartitions)
	}
	return end
}

func sumOffsets(offsets map[int]int64) int {
	var n int64
	for _, o := range offsets {
		n += o
	}
	return int(n)
}

// waitCommitted waits until group has committed at least end on every partition of the topic.
func waitCommitted(t testing.TB, ctx context.Context, group string, end map[int]int64) {
	t.Helper()
	c := &kafka.Client{Addr: kafka.TCP(env.kafka.Brokers...), Timeout: 10 * time.Second}
	var parts []int
	for p := range end {
		parts = append(parts, p)
	}
	var last error
	for {
		resp, err := c.OffsetFetch(ctx, &kafka.OffsetFetchRequest{GroupID: group, Topics: map[string][]int{wire.UpstreamTopic: parts}})
		switch {
		case err != nil:
			last = err
		case resp.Error != nil:
			last = resp.Error
		default:
			last = nil
			got := resp.Topics[wire.UpstreamTopic]
			if len(got) != len(parts) {
				last = fmt.Errorf("offsets of %d partitions, want %d", len(got), len(parts))
			}
			for _, p := range got {
				if p.Error != nil {
					last = fmt.Errorf("partition %d: %w", p.Partition, p.Error)
				} else if p.CommittedOffset < end[p.Partition] {
					last = errors.Join(last, fmt.Errorf("partition %d committed at %d, ends at %d", p.Partition, p.CommittedOffset, end[p.Partition]))
				}
			}
			if last == nil {
				return
			}
		}
		select {
		case <-ctx.Done():
			t.Fatalf("group %s did not commit the whole topic: %v", group, last)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func countUpstream(t testing.TB, uidPrefix string) int {
	t.Helper()
	var n int
	if err := testDB.QueryRow("SELECT COUNT(*) FROM upstream_messages WHERE uid LIKE ?", uidPrefix+"%").Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// loadUpstream returns the archived rows of the uids starting with uidPrefix, by id.
func loadUpstream(t testing.TB, uidPrefix string) map[string]wire.UpstreamRecord {
	t.Helper()
	rows, err := testDB.Query("SELECT id, uid, device, conn_id, node, ts, data FROM upstream_messages WHERE uid LIKE ?", uidPrefix+"%")
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	out := map[string]wire.UpstreamRecord{}
	for rows.Next() {
		var r wire.UpstreamRecord
		var data []byte
		if err := rows.Scan(&r.ID, &r.UID, &r.Device, &r.ConnID, &r.Node, &r.TS, &data); err != nil {
			t.Fatal(err)
		}
		r.Data = data
		if _, dup := out[r.ID]; dup {
			t.Fatalf("id %s stored twice", r.ID)
		}
		out[r.ID] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}
