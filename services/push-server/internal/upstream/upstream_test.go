package upstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"

	"github.com/heraldpush/herald/pkg/testenv"
	"github.com/heraldpush/herald/pkg/wire"
)

func publishAll(p *Producer, recs []wire.UpstreamRecord) []error {
	errs := make([]error, len(recs))
	var wg sync.WaitGroup
	for i, r := range recs {
		wg.Add(1)
		p.Publish(r, func(err error) { errs[i] = err; wg.Done() })
	}
	wg.Wait()
	return errs
}

func records(n, uids int) []wire.UpstreamRecord {
	recs := make([]wire.UpstreamRecord, n)
	for i := range recs {
		uid := fmt.Sprint("u", i%uids)
		recs[i] = wire.UpstreamRecord{ID: wire.UpstreamID(uid, "d", fmt.Sprint(i)), UID: uid, Device: "d", ConnID: "c", Node: "n", TS: int64(i), Data: json.RawMessage(fmt.Sprint(i))}
	}
	return recs
}

func TestPublishIsAcknowledgedAndOrderedPerUID(t *testing.T) {
	k := testenv.NewKafka(t, wire.UpstreamTopic)
	p := New(Config{Brokers: k.Brokers})
	defer p.Close()
	recs := records(1000, 10)
	for i, err := range publishAll(p, recs) {
		if err != nil {
			t.Fatalf("record %d: %v", i, err)
		}
	}
	r := kafka.NewReader(kafka.ReaderConfig{Brokers: k.Brokers, Topic: wire.UpstreamTopic, GroupID: "test", StartOffset: kafka.FirstOffset,
		HeartbeatInterval: 500 * time.Millisecond, SessionTimeout: 6 * time.Second, RebalanceTimeout: 5 * time.Second, JoinGroupBackoff: 200 * time.Millisecond})
	defer r.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	last := map[string]int64{}
	for range recs {
		m, err := r.ReadMessage(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var rec wire.UpstreamRecord
		if err := json.Unmarshal(m.Value, &rec); err != nil || string(m.Key) != rec.UID {
			t.Fatalf("record %s key %s: %v", m.Value, m.Key, err)
		}
		if prev, ok := last[rec.UID]; ok && rec.TS <= prev {
			t.Fatalf("uid %s: ts %d after %d", rec.UID, rec.TS, prev)
		}
		last[rec.UID] = rec.TS
	}
}

func TestPublishFailsWhenKafkaIsDown(t *testing.T) {
	k := testenv.NewKafka(t, wire.UpstreamTopic)
	p := New(Config{Brokers: k.Brokers, Timeout: time.Second})
	defer p.Close()
	if errs := publishAll(p, records(1, 1)); errs[0] != nil {
		t.Fatalf("warm-up: %v", errs[0])
	}
	if err := k.Stop(); err != nil {
		t.Fatal(err)
	}
	for i, err := range publishAll(p, records(20, 2)) {
		if err == nil {
			t.Fatalf("record %d acknowledged with the broker down", i)
		}
	}
	if err := k.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		errs := publishAll(p, records(5, 1))
		if !slicesHaveErr(errs) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("still failing after the broker is back: %v", errs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func slicesHaveErr(errs []error) bool {
	return errors.Join(errs...) != nil
}
