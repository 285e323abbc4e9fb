package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/heraldpush/herald/pkg/client"
	"github.com/heraldpush/herald/pkg/testenv"
	"github.com/heraldpush/herald/pkg/wire"
)

// readRecords reads records of the topic (a fresh consumer group each time) until done says it has
// enough, within a deadline.
func readRecords(t testing.TB, k *testenv.Kafka, done func([]wire.UpstreamRecord) bool) []wire.UpstreamRecord {
	t.Helper()
	r := kafka.NewReader(kafka.ReaderConfig{
		Brokers: k.Brokers, Topic: wire.UpstreamTopic, GroupID: fmt.Sprint("test-", time.Now().UnixNano()), StartOffset: kafka.FirstOffset,
		HeartbeatInterval: 500 * time.Millisecond, SessionTimeout: 6 * time.Second, RebalanceTimeout: 5 * time.Second, JoinGroupBackoff: 200 * time.Millisecond,
		MaxWait: 500 * time.Millisecond,
	})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var recs []wire.UpstreamRecord
	for !done(recs) {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatalf("after %d records: %v", len(recs), err)
		}
		var rec wire.UpstreamRecord
		if err := json.Unmarshal(m.Value, &rec); err != nil {
			t.Fatalf("record %s: %v", m.Value, err)
		}
		if string(m.Key) != rec.UID {
			t.Fatalf("record key %q, uid %q", m.Key, rec.UID)
		}
		recs = append(recs, rec)
	}
	return recs
}

func TestUpstreamToKafka(t *testing.T) {
	k := testenv.NewKafka(t, wire.UpstreamTopic)
	n := startNode(t, "ps-up", nodeOpts{kafka: k, env: map[string]string{"HERALD_MAX_UP_DATA": "100"}})
	c := dial(t, n, "sender", "phone")

	c.send(`{"type":"up","ref":"r-1","data":{"temp":21.5}}`)
	ack := c.nextOfType(wire.TypeUpAck)
	wantID := wire.UpstreamID("sender", "phone", "r-1")
	if ack["ref"] != "r-1" || ack["id"] != wantID {
		t.Fatalf("up_ack %v, want ref r-1 and id %s", ack, wantID)
	}
	rec := readRecords(t, k, func(r []wire.UpstreamRecord) bool { return len(r) == 1 })[0]
	if rec.ID != wantID || rec.UID != "sender" || rec.Device != "phone" || rec.ConnID != c.welcome.ConnID || rec.Node != "ps-up" ||
		string(rec.Data) != `{"temp":21.5}` || time.Since(time.UnixMilli(rec.TS)) > time.Minute {
		t.Fatalf("record %+v", rec)
	}

	t.Run("data over the limit", func(t *testing.T) {
		c.send(`{"type":"up","ref":"big","data":"` + strings.Repeat("x", 200) + `"}`)
		if e := c.nextOfType(wire.TypeError); e["code"] != wire.CodeTooLarge || e["ref"] != "big" {
			t.Fatalf("error %v", e)
		}
		c.send(`{"type":"ping"}`)
		c.nextOfType(wire.TypePong)
	})
}

// TestUpstreamBrokerDown stops the broker: devices get retryable errors and no up_ack, reads pause at
// the in-flight limit without dropping a frame, and after the broker returns the client's resends land.
func TestUpstreamBrokerDown(t *testing.T) {
	k := testenv.NewKafka(t, wire.UpstreamTopic)
	n := startNode(t, "ps-up-down", nodeOpts{kafka: k, env: map[string]string{"HERALD_UPSTREAM_TIMEOUT": "1s", "HERALD_MAX_UP_INFLIGHT": "2"}})

	if err := k.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Run("every frame gets a retryable error, none an ack", func(t *testing.T) {
		c := dial(t, n, "down-raw", "d")
		for i := range 6 {
			c.send(fmt.Sprintf(`{"type":"up","ref":"r%d","data":%d}`, i, i))
		}
		seen := map[string]bool{}
		for len(seen) < 6 {
			var m map[string]any
			json.Unmarshal(c.next(), &m)
			switch m["type"] {
			case wire.TypeUpAck:
				t.Fatalf("up_ack with the broker down: %v", m)
			case wire.TypeError:
				if m["code"] != wire.CodeUnavailable {
					t.Fatalf("error %v, want unavailable", m)
				}
				seen[m["ref"].(string)] = true
			}
		}
	})

	// Go clients keep resending; the broker comes back while they do.
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	ids := make(chan string, 40)
	errs := make(chan error, 40)
	for i := range 4 {
		uid := fmt.Sprint("resender-", i)
		tok := tokenFor(t, uid, "d")
		cl := client.New(client.Config{Token: tok, WSURL: n.wsURL, UpTimeout: 2 * time.Second, MinBackoff: 50 * time.Millisecond, MaxBackoff: 500 * time.Millisecond, Logger: discard})
		runCtx, stop := context.WithCancel(ctx)
		defer stop()
		go cl.Run(runCtx)
		for j := range 10 {
			wg.Go(func() {
				id, err := cl.Send(ctx, json.RawMessage(fmt.Sprint(j)))
				if err != nil {
					errs <- err
					return
				}
				ids <- id
			})
		}
	}
	time.Sleep(2 * time.Second) // the first attempts fail
	if err := k.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(ids)
	close(errs)
	for err := range errs {
		t.Fatalf("send failed for good: %v", err)
	}
	want := map[string]bool{}
	for id := range ids {
		want[id] = true
	}
	if len(want) != 40 {
		t.Fatalf("%d distinct acked ids, want 40", len(want))
	}
	// A resend may be stored twice in Kafka (acked late); it carries the same id, which the archive
	// keeps once. Every acked id is there.
	readRecords(t, k, func(recs []wire.UpstreamRecord) bool {
		got := map[string]bool{}
		for _, rec := range recs {
			got[rec.ID] = true
		}
		for id := range want {
			if !got[id] {
				return false
			}
		}
		return true
	})
}
