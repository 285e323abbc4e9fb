package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldpush/herald/pkg/wire"
)

// fakePushRoute stands in for push-route's internal API: it records the acks it is given and serves
// the pending lists a test sets, and counts calls without the right secret.
type fakePushRoute struct {
	srv *httptest.Server
	url string

	// mu guards the fields below.
	mu           sync.Mutex
	acks         []wire.Ack
	ackArrived   map[string]time.Time // by ack id
	batches      []int                // acks per request, in arrival order
	pending      map[string][]wire.Message
	pendingCalls map[string]int // by uid
	badSecret    int
	down         bool // cut every connection without an answer, as a crashed push-route would
	failAcks     int  // answer this many more ack calls with 503
}

// unreachable is a push-route URL nothing listens on: port 1 is below the ephemeral range and
// privileged, so no test process can take it, and connecting is refused at once.
const unreachable = "http://127.0.0.1:1"

// newFakePushRoute serves until the test ends.
func newFakePushRoute(t testing.TB) *fakePushRoute {
	t.Helper()
	f := &fakePushRoute{ackArrived: map[string]time.Time{}, pending: map[string][]wire.Message{}, pendingCalls: map[string]int{}}
	f.srv = httptest.NewServer(f)
	f.url = f.srv.URL
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakePushRoute) set(fn func(f *fakePushRoute)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakePushRoute) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		if conn, _, err := w.(http.Hijacker).Hijack(); err == nil {
			conn.Close()
		}
		return
	}
	if r.Header.Get(wire.SecretHeader) != secret {
		f.badSecret++
		http.Error(w, `{"error":{"code":"unauthorized","message":"secret"}}`, http.StatusUnauthorized)
		return
	}
	switch {
	case r.Method == http.MethodPost && r.URL.Path == wire.PathAcks:
		if f.failAcks > 0 {
			f.failAcks--
			http.Error(w, `{"error":{"code":"unavailable","message":"mysql down"}}`, http.StatusServiceUnavailable)
			return
		}
		var b wire.AckBatch
		if err := json.NewDecoder(r.Body).Decode(&b); err != nil {
			http.Error(w, `{"error":{"code":"malformed_json","message":"bad"}}`, http.StatusBadRequest)
			return
		}
		f.batches = append(f.batches, len(b.Acks))
		for _, a := range b.Acks {
			f.acks = append(f.acks, a)
			if _, seen := f.ackArrived[a.ID]; !seen {
				f.ackArrived[a.ID] = time.Now()
			}
		}
		w.Write([]byte(`{}`))
	case r.Method == http.MethodPost && r.URL.Path == wire.PathPending:
		var req wire.PendingRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, `{"error":{"code":"malformed_json","message":"bad"}}`, http.StatusBadRequest)
			return
		}
		// Recorded and answered in one critical section: a test that sees the call counted may
		// change the list without racing this answer.
		f.pendingCalls[req.UID]++
		msgs := f.pending[req.UID]
		if msgs == nil {
			msgs = []wire.Message{}
		}
		json.NewEncoder(w).Encode(wire.PendingResponse{Messages: msgs})
	default:
		http.NotFound(w, r)
	}
}

// setPending gives uid pending messages and, as push-route does when it stores one, sets the user's
// pending marker in the shared Redis, without which a connecting device asks for nothing.
func (f *fakePushRoute) setPending(t testing.TB, uid string, msgs ...wire.Message) {
	t.Helper()
	markPending(t, uid)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pending[uid] = msgs
}

// markPending sets uid's pending marker in the shared Redis.
func markPending(t testing.TB, uid string) {
	t.Helper()
	if err := routeStore(t, sharedRedis).MarkPending(context.Background(), []string{uid}, time.Minute); err != nil {
		t.Fatal(err)
	}
}

func (f *fakePushRoute) pendingCallsFor(uid string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pendingCalls[uid]
}

// acksSnapshot returns the acks received, the arrival time of each id, and the batch sizes.
func (f *fakePushRoute) acksSnapshot() ([]wire.Ack, map[string]time.Time, []int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	arrived := make(map[string]time.Time, len(f.ackArrived))
	for k, v := range f.ackArrived {
		arrived[k] = v
	}
	return append([]wire.Ack(nil), f.acks...), arrived, append([]int(nil), f.batches...)
}

func (f *fakePushRoute) checkSecret(t testing.TB) {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.badSecret > 0 {
		t.Errorf("push-route got %d calls without the internal secret", f.badSecret)
	}
}

// sendAcks writes one ack frame per id in a single write, so the node reads them together.
func (c *wsClient) sendAcks(ids []string) {
	c.t.Helper()
	var buf bytes.Buffer
	for _, id := range ids {
		if err := ws.WriteFrame(&buf, ws.MaskFrame(ws.NewTextFrame([]byte(`{"type":"ack","id":"`+id+`"}`)))); err != nil {
			c.t.Fatal(err)
		}
	}
	if _, err := c.conn.Write(buf.Bytes()); err != nil {
		c.t.Fatalf("send acks: %v", err)
	}
}

// metricValue sums the samples of one metric on the node's /metrics (label filter: a substring of
// the label set, "" for all); 0 when it has none.
func metricValue(t testing.TB, n *node, name, labels string) float64 {
	t.Helper()
	resp, err := http.Get(n.internalURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		rest, ok := strings.CutPrefix(line, name)
		if !ok || (rest[0] != ' ' && rest[0] != '{') || !strings.Contains(rest, labels) {
			continue
		}
		v, err := strconv.ParseFloat(rest[strings.LastIndexByte(rest, ' ')+1:], 64)
		if err != nil {
			t.Fatalf("metric line %q: %v", line, err)
		}
		sum += v
	}
	return sum
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return out
}

// waitAcks waits until every id arrived at push-route, failing after within.
func waitAcks(t testing.TB, f *fakePushRoute, want []string, within time.Duration) (map[string]time.Time, []wire.Ack, []int) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		acks, arrived, batches := f.acksSnapshot()
		missing := 0
		for _, id := range want {
			if _, ok := arrived[id]; !ok {
				missing++
			}
		}
		if missing == 0 {
			return arrived, acks, batches
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d acks not at push-route after %v", missing, len(want), within)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestAcksReachPushRoute: acks from devices arrive at push-route batched, each with the device's uid.
func TestAcksReachPushRoute(t *testing.T) {
	pr := newFakePushRoute(t)
	n := startNode(t, "ps-acks", nodeOpts{env: map[string]string{"HERALD_PUSH_ROUTE_URL": pr.url, "HERALD_MSG_BURST": "500", "HERALD_MSG_RATE": "1000"}})
	dana := dial(t, n, "dana", "phone")
	eve := dial(t, n, "eve", "phone")

	danaIDs, eveIDs := ids("dana-msg", 60), ids("eve-msg", 3)
	sent := time.Now()
	dana.sendAcks(danaIDs)
	eve.sendAcks(eveIDs)
	// DESIGN.md: acks reach push-route within 1 s of the device sending them. Asserted with a margin
	// for a loaded machine running the race detector.
	arrived, acks, batches := waitAcks(t, pr, append(danaIDs, eveIDs...), 3*time.Second)
	var last time.Time
	for _, at := range arrived {
		if at.After(last) {
			last = at
		}
	}
	t.Logf("all acks at push-route %v after sending, in %d requests", last.Sub(sent).Round(time.Millisecond), len(batches))

	wantUID := map[string]string{}
	for _, id := range danaIDs {
		wantUID[id] = "dana"
	}
	for _, id := range eveIDs {
		wantUID[id] = "eve"
	}
	for _, a := range acks {
		if wantUID[a.ID] != a.UID {
			t.Errorf("ack %+v: want uid %q", a, wantUID[a.ID])
		}
	}
	if len(acks) != len(wantUID) {
		t.Errorf("push-route got %d acks, want %d (no repeats when it answers at once)", len(acks), len(wantUID))
	}
	// Sixty acks read in one go cannot have gone one per request.
	if len(batches) >= len(acks) {
		t.Errorf("acks not batched: %d requests for %d acks", len(batches), len(acks))
	}
	pr.checkSecret(t)
	eventually(t, "acks counted", func() error { // counted once the answer is back
		if got := metricValue(t, n, "herald_acks_forwarded_total", ""); got != float64(len(acks)) {
			return fmt.Errorf("herald_acks_forwarded_total %v, want %d", got, len(acks))
		}
		return nil
	})

	// An ack id no message can have is refused and not forwarded.
	dana.send(`{"type":"ack","id":"` + strings.Repeat("x", 200) + `"}`)
	if e := dana.nextOfType("error"); e["code"] != wire.CodeBadRequest {
		t.Fatalf("long ack id: %v", e)
	}
}

// TestAcksSurvivePushRouteOutage: while push-route is down (cutting connections, then answering
// 503), acks wait in the node and arrive once it is back; the devices notice nothing.
func TestAcksSurvivePushRouteOutage(t *testing.T) {
	pr := newFakePushRoute(t)
	pr.set(func(f *fakePushRoute) { f.down = true })
	n := startNode(t, "ps-acks-outage", nodeOpts{env: map[string]string{"HERALD_PUSH_ROUTE_URL": pr.url}})
	c := dial(t, n, "frank", "phone")
	want := ids("frank-msg", 30)
	c.sendAcks(want[:20])
	eventually(t, "ack batches failing", func() error {
		if v := metricValue(t, n, "herald_ack_batches_failed_total", ""); v < 2 {
			return fmt.Errorf("herald_ack_batches_failed_total %v", v)
		}
		return nil
	})
	// The reader never waits for push-route.
	c.send(`{"type":"ping"}`)
	c.nextOfType("pong")
	c.sendAcks(want[20:])

	pr.set(func(f *fakePushRoute) { f.down, f.failAcks = false, 2 }) // back, but not healthy at once
	waitAcks(t, pr, want, 20*time.Second)
	pr.checkSecret(t)
	if v := metricValue(t, n, "herald_acks_dropped_total", ""); v != 0 {
		t.Errorf("herald_acks_dropped_total %v, want 0", v)
	}
	c.send(`{"type":"ping"}`)
	c.nextOfType("pong")
}

// TestReplayOnConnect: a new connection gets its user's pending messages after the welcome, in
// order; the user's connection that was already open does not get them again.
func TestReplayOnConnect(t *testing.T) {
	pr := newFakePushRoute(t)
	n := startNode(t, "ps-replay", nodeOpts{env: map[string]string{"HERALD_PUSH_ROUTE_URL": pr.url}})

	// Nothing stored for grace yet (no marker): her first connection asks push-route for nothing.
	phone := dial(t, n, "grace", "phone")
	eventually(t, "the first connection's replay skipped", func() error {
		if v := metricValue(t, n, "herald_replays_skipped_total", ""); v != 1 {
			return fmt.Errorf("herald_replays_skipped_total %v", v)
		}
		return nil
	})
	pending := []wire.Message{
		{ID: "p1", Data: json.RawMessage(`{"n":1}`), TS: 1700000000001},
		{ID: "p2", Data: json.RawMessage(`"two"`), TS: 1700000000002},
		{ID: "p3", Data: json.RawMessage(`[3]`), TS: 1700000000003},
	}
	pr.setPending(t, "grace", pending...)

	laptop := dial(t, n, "grace", "laptop") // dial has read the welcome: nothing came before it
	for _, m := range pending {
		var p wire.Push
		b := laptop.next()
		if err := json.Unmarshal(b, &p); err != nil || p.Type != wire.TypePush || p.ID != m.ID || p.TS != m.TS || string(p.Data) != string(m.Data) {
			t.Fatalf("frame %s, want the push of %+v", b, m)
		}
	}
	if got := pr.pendingCallsFor("grace"); got != 1 {
		t.Fatalf("pending calls %d, want 1 (the marked user's second connection)", got)
	}

	// The phone's next frame is a live push, not a replayed one.
	deliver(t, n, "live-1", `"live"`, "grace")
	for name, c := range map[string]*wsClient{"phone": phone, "laptop": laptop} {
		if p := c.nextOfType(wire.TypePush); p["id"] != "live-1" {
			t.Fatalf("%s got %v, want the live push", name, p)
		}
	}
	pr.checkSecret(t)
	eventually(t, "replays counted", func() error {
		replays, replayed := metricValue(t, n, "herald_replays_total", ""), metricValue(t, n, "herald_replayed_messages_total", "")
		if replays != 1 || replayed != 3 {
			return fmt.Errorf("herald_replays_total %v (want 1), herald_replayed_messages_total %v (want 3)", replays, replayed)
		}
		return nil
	})
}

// TestReplayPacedForSlowClient: a long pending list goes out as fast as the client reads, instead of
// overflowing its write queue (which would close it as a slow consumer at every connect).
func TestReplayPacedForSlowClient(t *testing.T) {
	pr := newFakePushRoute(t)
	n := startNode(t, "ps-replay-slow", nodeOpts{env: map[string]string{"HERALD_PUSH_ROUTE_URL": pr.url, "HERALD_MAX_QUEUE": "65536"}})
	var pending []wire.Message
	filler := strings.Repeat("x", 16000)
	// 8 MB: far more than the write queue, and than what the kernel buffers on loopback (its send
	// buffer grows to 4 MB).
	for i, id := range ids("bulk", 500) {
		pending = append(pending, wire.Message{ID: id, Data: json.RawMessage(`"` + filler + `"`), TS: int64(i + 1)})
	}
	pr.setPending(t, "heidi", pending...)

	c, status := tryDialWith(t, smallReceiveBuffer(), n.wsURL+"?token="+tokenFor(t, "heidi", "phone"))
	if c == nil {
		t.Fatalf("dial: HTTP %d", status)
	}
	time.Sleep(300 * time.Millisecond) // let the node fill the socket before the client reads
	for _, m := range pending {
		var p wire.Push
		if err := json.Unmarshal(c.next(), &p); err != nil || p.ID != m.ID {
			t.Fatalf("got %+v (%v), want push %s", p, err, m.ID)
		}
	}
	c.send(`{"type":"ping"}`)
	c.nextOfType("pong")
}

// TestPushRouteDownAtConnect: without push-route's pending list a connection works as usual.
func TestPushRouteDownAtConnect(t *testing.T) {
	for _, tt := range []struct {
		name string
		url  func(t *testing.T) string
	}{
		{"unreachable", func(t *testing.T) string { return unreachable }},
		{"answers 500", func(t *testing.T) string {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, `{"error":{"code":"internal","message":"boom"}}`, http.StatusInternalServerError)
			}))
			t.Cleanup(srv.Close)
			return srv.URL
		}},
		{"answers garbage", func(t *testing.T) string {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Write([]byte(`{"messages":[{"id":`))
			}))
			t.Cleanup(srv.Close)
			return srv.URL
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			n := startNode(t, "ps-replay-down", nodeOpts{env: map[string]string{"HERALD_PUSH_ROUTE_URL": tt.url(t)}})
			markPending(t, "ivan")
			c := dial(t, n, "ivan", "phone")
			if c.welcome.UID != "ivan" {
				t.Fatalf("welcome %+v", c.welcome)
			}
			eventually(t, "replay failure counted", func() error {
				if v := metricValue(t, n, "herald_replay_failures_total", `reason="push_route"`); v != 1 {
					return fmt.Errorf("herald_replay_failures_total %v", v)
				}
				return nil
			})
			c.send(`{"type":"ping"}`)
			c.nextOfType("pong")
			deliver(t, n, "live-2", `{}`, "ivan")
			if p := c.nextOfType(wire.TypePush); p["id"] != "live-2" {
				t.Fatalf("push %v", p)
			}
			// More connections of the same user are admitted as well, also once replays fail without
			// asking push-route (after five failures in a row).
			for i := range 7 {
				d := dial(t, n, "ivan", fmt.Sprint("device-", i))
				d.send(`{"type":"ping"}`)
				d.nextOfType("pong")
			}
			eventually(t, "every replay failure counted", func() error {
				if v := metricValue(t, n, "herald_replay_failures_total", `reason="push_route"`); v != 8 {
					return fmt.Errorf("herald_replay_failures_total %v", v)
				}
				return nil
			})
		})
	}
}
