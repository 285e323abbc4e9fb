package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldpush/herald/pkg/wire"
)

// forwarderFor makes an ackForwarder posting to url, with metrics in a registry of its own.
func forwarderFor(t *testing.T, url string, opts ackOptions) (*ackForwarder, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	client, closeIdle := newPushRouteClient(url, secret)
	t.Cleanup(closeIdle)
	f := newAckForwarder(client, discard, newMetrics(reg), opts)
	return f, reg
}

// counter is the value of one counter sample in reg (0 when absent).
func counter(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if label == "" || (len(m.GetLabel()) > 0 && m.GetLabel()[0].GetValue() == label) {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func startForwarder(t *testing.T, f *ackForwarder) {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { f.run(ctx) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func addAcks(f *ackForwarder, uid string, ids []string) {
	for _, id := range ids {
		f.add(wire.Ack{UID: uid, ID: id})
	}
}

func TestAckForwarder(t *testing.T) {
	fast := ackOptions{batch: 10, linger: 20 * time.Millisecond, buffer: 25, minBackoff: 10 * time.Millisecond, maxBackoff: 50 * time.Millisecond}

	t.Run("full buffer drops the oldest; batches are capped", func(t *testing.T) {
		pr := newFakePushRoute(t)
		f, reg := forwarderFor(t, pr.url, fast)
		all := ids("m", 40)
		addAcks(f, "u", all) // nothing sends yet: the buffer keeps the newest 25
		if got := f.buffered(); got != 25 {
			t.Fatalf("buffered %d, want 25", got)
		}
		if got := counter(t, reg, "herald_acks_dropped_total", "buffer_full"); got != 15 {
			t.Fatalf("dropped %v, want 15", got)
		}
		startForwarder(t, f)
		_, acks, batches := waitAcks(t, pr, all[15:], 10*time.Second)
		if len(acks) != 25 {
			t.Fatalf("push-route got %d acks, want the newest 25", len(acks))
		}
		for _, n := range batches {
			if n > fast.batch {
				t.Fatalf("batch of %d acks, over the limit of %d", n, fast.batch)
			}
		}
	})

	t.Run("failed batches are retried", func(t *testing.T) {
		pr := newFakePushRoute(t)
		pr.set(func(f *fakePushRoute) { f.failAcks = 3 })
		f, reg := forwarderFor(t, pr.url, fast)
		startForwarder(t, f)
		want := ids("r", 5)
		addAcks(f, "u", want)
		waitAcks(t, pr, want, 10*time.Second)
		eventually(t, "counted", func() error { // counted once the answer is back
			failed, forwarded := counter(t, reg, "herald_ack_batches_failed_total", ""), counter(t, reg, "herald_acks_forwarded_total", "")
			if failed != 3 || forwarded != 5 {
				return fmt.Errorf("failed batches %v (want 3), forwarded %v (want 5)", failed, forwarded)
			}
			return nil
		})
	})

	t.Run("a batch push-route refuses as malformed is dropped, not retried", func(t *testing.T) {
		var mu sync.Mutex
		calls := 0
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			calls++
			mu.Unlock()
			http.Error(w, `{"error":{"code":"invalid_request","message":"no"}}`, http.StatusBadRequest)
		}))
		defer srv.Close()
		f, reg := forwarderFor(t, srv.URL, fast)
		startForwarder(t, f)
		addAcks(f, "u", ids("bad", 3))
		eventually(t, "batch dropped", func() error {
			if got := counter(t, reg, "herald_acks_dropped_total", "rejected"); got != 3 {
				return fmt.Errorf("rejected %v", got)
			}
			return nil
		})
		time.Sleep(100 * time.Millisecond) // a retry would come within the backoff
		mu.Lock()
		defer mu.Unlock()
		if calls != 1 || f.buffered() != 0 {
			t.Fatalf("%d calls, %d buffered; want 1 call and nothing kept", calls, f.buffered())
		}
	})

	t.Run("flush sends what is left", func(t *testing.T) {
		pr := newFakePushRoute(t)
		slow := fast
		slow.linger = time.Hour
		f, _ := forwarderFor(t, pr.url, slow)
		startForwarder(t, f)
		want := ids("late", 3)
		addAcks(f, "u", want)
		f.flush(5 * time.Second)
		waitAcks(t, pr, want, 0)
	})

	t.Run("flush gives up at its timeout", func(t *testing.T) {
		f, reg := forwarderFor(t, unreachable, fast)
		startForwarder(t, f)
		addAcks(f, "u", ids("lost", 3))
		start := time.Now()
		f.flush(300 * time.Millisecond)
		if took := time.Since(start); took > 5*time.Second {
			t.Fatalf("flush took %v", took)
		}
		if got := counter(t, reg, "herald_acks_dropped_total", "shutdown"); got != 3 {
			t.Fatalf("dropped at shutdown %v, want 3", got)
		}
	})
}
