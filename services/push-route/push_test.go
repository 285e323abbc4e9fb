package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/routes"
	"github.com/heraldpush/herald/pkg/wire"
)

func TestPushReachesDevicesOnTwoNodes(t *testing.T) {
	phone := device(t, nodeA, "two-nodes", "phone")
	laptop := device(t, nodeB, "two-nodes", "laptop")
	resp := push(t, map[string]any{"uids": []string{"two-nodes", "nobody-here"}, "data": map[string]string{"text": "hi"}})
	if resp.ID == "" || len(resp.Results) != 2 {
		t.Fatalf("response %+v", resp)
	}
	if r := resp.Results[0]; r.UID != "two-nodes" || r.Delivered != 2 || r.Stored {
		t.Fatalf("result %+v, want 2 delivered, not stored", r)
	}
	if r := resp.Results[1]; r.Delivered != 0 || r.Stored {
		t.Fatalf("unknown uid result %+v", r)
	}
	for _, c := range []interface{ Pushes() <-chan wire.Push }{phone, laptop} {
		select {
		case p := <-c.Pushes():
			if p.ID != resp.ID || string(p.Data) != `{"text":"hi"}` {
				t.Fatalf("push %+v", p)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a device got nothing")
		}
	}
}

func TestStaleRouteIsCleanedAndMessageStored(t *testing.T) {
	// A route that names a live node which does not hold the connection: the classic lost message.
	store := routeStore(t)
	ghostUID := uniq("ghost")
	ghost := routes.Route{UID: ghostUID, ConnID: "ps-a:doesnotexist", Node: "ps-a", Device: "old", ConnectedAt: time.Now()}
	if _, err := store.Register(context.Background(), ghost); err != nil {
		t.Fatal(err)
	}
	resp := push(t, map[string]any{"uids": []string{ghostUID}, "data": "hello", "ttl_s": 600})
	if r := resp.Results[0]; r.Delivered != 0 || !r.Stored {
		t.Fatalf("result %+v, want not delivered and stored", r)
	}
	eventually(t, "stale route removed", func() error {
		got, err := store.Lookup(context.Background(), []string{ghostUID})
		if err != nil || len(got[ghostUID]) != 0 {
			return fmt.Errorf("routes %+v %v", got, err)
		}
		return nil
	})
	// The stored message reaches the user when a device connects.
	c := device(t, nodeB, ghostUID, "new")
	if p := nextPush(t, c); p.ID != resp.ID {
		t.Fatalf("replayed %+v, want %s", p, resp.ID)
	}
}

func TestOfflineReplayAndAck(t *testing.T) {
	user := uniq("offline-user")
	first := push(t, map[string]any{"uids": []string{user}, "data": 1, "ttl_s": 600})
	second := push(t, map[string]any{"uids": []string{user}, "data": 2, "ttl_s": 600})
	expired := push(t, map[string]any{"uids": []string{user}, "data": 3, "ttl_s": 1})
	if !first.Results[0].Stored || first.Results[0].Delivered != 0 {
		t.Fatalf("result %+v", first.Results[0])
	}
	time.Sleep(1100 * time.Millisecond) // let the third one expire

	c := device(t, nodeA, user, "phone")
	for _, want := range []string{first.ID, second.ID} {
		if p := nextPush(t, c); p.ID != want {
			t.Fatalf("replayed %s, want %s (in order, expired ones dropped; expired was %s)", p.ID, want, expired.ID)
		}
	}
	noPush(t, c, 300*time.Millisecond)
	if err := c.Ack(context.Background(), first.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.Ack(context.Background(), second.ID); err != nil {
		t.Fatal(err)
	}
	// Acks reach push-route within a second (DESIGN.md); a new connection gets nothing again.
	eventually(t, "acks cleared the inbox", func() error {
		var n int
		openDB(t).QueryRow("SELECT COUNT(*) FROM inbox WHERE uid = ? AND expires_at > NOW(3)", user).Scan(&n)
		if n != 0 {
			return fmt.Errorf("%d pending", n)
		}
		return nil
	})
	c.Close()
	again := device(t, nodeB, user, "tablet")
	noPush(t, again, 500*time.Millisecond)
}

func TestAckedByAnyDeviceClearsIt(t *testing.T) {
	user := uniq("multi")
	a := device(t, nodeA, user, "a")
	b := device(t, nodeB, user, "b")
	resp := push(t, map[string]any{"uids": []string{user}, "data": "x", "ttl_s": 600})
	if resp.Results[0].Delivered != 2 || !resp.Results[0].Stored {
		t.Fatalf("result %+v", resp.Results[0])
	}
	nextPush(t, a)
	nextPush(t, b)
	if err := b.Ack(context.Background(), resp.ID); err != nil {
		t.Fatal(err)
	}
	eventually(t, "pending cleared", func() error {
		var n int
		openDB(t).QueryRow("SELECT COUNT(*) FROM inbox WHERE uid = ?", user).Scan(&n)
		if n != 0 {
			return fmt.Errorf("%d pending", n)
		}
		return nil
	})
}

func TestIdempotentCallerID(t *testing.T) {
	id, uid := fmt.Sprint("order-", time.Now().UnixNano()), fmt.Sprint("idem-", time.Now().UnixNano())
	body := map[string]any{"uids": []string{uid}, "data": "once", "ttl_s": 600, "id": id}
	first := push(t, body)
	second := push(t, body)
	if first.ID != id || second.ID != first.ID || !second.Duplicate || first.Duplicate {
		t.Fatalf("first %+v second %+v", first, second)
	}
	if second.Results[0].Delivered != 0 || !second.Results[0].Stored {
		t.Fatalf("repeat result %+v, want nothing delivered, still stored", second.Results[0])
	}
	var n int
	openDB(t).QueryRow("SELECT COUNT(*) FROM inbox WHERE message_id = ?", id).Scan(&n)
	if n != 1 {
		t.Fatalf("%d inbox rows, want 1", n)
	}
	// Stored once, so replayed once.
	c := device(t, nodeA, uid, "d")
	if p := nextPush(t, c); p.ID != id {
		t.Fatalf("replayed %+v", p)
	}
	noPush(t, c, 300*time.Millisecond)

	// Without a ttl, to a connected device: delivered once.
	body = map[string]any{"uids": []string{uid}, "data": "once", "id": id + "-no-ttl"}
	if r := push(t, body); r.Results[0].Delivered != 1 {
		t.Fatalf("first call %+v", r)
	}
	if again := push(t, body); !again.Duplicate || again.Results[0].Delivered != 0 {
		t.Fatalf("repeat without ttl not recognised: %+v", again)
	}
	if p := nextPush(t, c); p.ID != id+"-no-ttl" {
		t.Fatalf("push %+v", p)
	}
	noPush(t, c, 300*time.Millisecond)
}

func TestBroadcastAndConnections(t *testing.T) {
	a := device(t, nodeA, "bc-1", "phone")
	b := device(t, nodeB, "bc-2", "laptop")
	r := call(t, http.MethodPost, "/v1/broadcast", apiKey, map[string]any{"data": "to everyone"}, nil)
	var resp wire.PushBroadcastResponse
	json.Unmarshal(r.body, &resp)
	if r.status != 200 || resp.ID == "" || resp.Delivered < 2 {
		t.Fatalf("broadcast: %d %s", r.status, r.body)
	}
	for _, c := range []interface{ Pushes() <-chan wire.Push }{a, b} {
		select {
		case p := <-c.Pushes():
			if p.ID != resp.ID {
				t.Fatalf("push %+v", p)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("broadcast missed a device")
		}
	}

	r = call(t, http.MethodGet, "/v1/users/bc-1/connections", apiKey, nil, nil)
	var conns wire.ConnectionsResponse
	json.Unmarshal(r.body, &conns)
	if r.status != 200 || conns.UID != "bc-1" || len(conns.Connections) != 1 {
		t.Fatalf("connections: %d %s", r.status, r.body)
	}
	got := conns.Connections[0]
	if got.ConnID != a.Welcome().ConnID || got.Node != "ps-a" || got.Device != "phone" || time.Since(got.ConnectedAt) > time.Minute {
		t.Fatalf("connection %+v", got)
	}
	if !strings.Contains(string(r.body), `"connected_at":"20`) {
		t.Fatalf("connected_at not RFC 3339: %s", r.body)
	}
}

func TestTraceID(t *testing.T) {
	body := map[string]any{"uids": []string{"tracer"}, "data": 1}
	r := call(t, http.MethodPost, "/v1/push", apiKey, body, http.Header{"X-Request-Id": {"req-123"}})
	if r.header.Get("X-Request-Id") != "req-123" {
		t.Fatalf("X-Request-Id %q", r.header.Get("X-Request-Id"))
	}
	tp := "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
	r = call(t, http.MethodPost, "/v1/push", apiKey, body, http.Header{"Traceparent": {tp}})
	if r.header.Get("X-Request-Id") != "4bf92f3577b34da6a3ce929d0e0e4736" || r.header.Get("Traceparent") != tp {
		t.Fatalf("headers %v", r.header)
	}
	r = call(t, http.MethodPost, "/v1/push", apiKey, body, nil)
	if len(r.header.Get("X-Request-Id")) != 32 {
		t.Fatalf("no generated trace id: %v", r.header)
	}
}

func TestPushBadInput(t *testing.T) {
	many := make([]string, 51)
	for i := range many {
		many[i] = fmt.Sprint("u", i)
	}
	tests := []struct {
		name   string
		key    string
		body   any
		status int
		code   string
	}{
		{"no key", "", map[string]any{"uids": []string{"a"}, "data": 1}, 401, "unauthorized"},
		{"wrong key", "hk_wrong", map[string]any{"uids": []string{"a"}, "data": 1}, 401, "unauthorized"},
		{"malformed json", apiKey, `{"uids":`, 400, "malformed_json"},
		{"empty uids", apiKey, map[string]any{"uids": []string{}, "data": 1}, 400, "invalid_request"},
		{"no uids", apiKey, map[string]any{"data": 1}, 400, "invalid_request"},
		{"too many uids", apiKey, map[string]any{"uids": many, "data": 1}, 400, "invalid_request"},
		{"bad uid", apiKey, map[string]any{"uids": []string{"a|b"}, "data": 1}, 400, "invalid_request"},
		{"no data", apiKey, map[string]any{"uids": []string{"a"}}, 400, "invalid_request"},
		{"null data", apiKey, `{"uids":["a"],"data":null}`, 400, "invalid_request"},
		{"data too large", apiKey, map[string]any{"uids": []string{"a"}, "data": strings.Repeat("x", 2000)}, 413, "body_too_large"},
		{"negative ttl", apiKey, map[string]any{"uids": []string{"a"}, "data": 1, "ttl_s": -1}, 400, "invalid_request"},
		{"ttl too long", apiKey, map[string]any{"uids": []string{"a"}, "data": 1, "ttl_s": 365 * 86400}, 400, "invalid_request"},
		{"bad caller id", apiKey, map[string]any{"uids": []string{"a"}, "data": 1, "id": "has space"}, 400, "invalid_request"},
		{"body over 1 MiB", apiKey, `{"uids":["a"],"data":"` + strings.Repeat("x", 1<<20) + `"}`, 413, "body_too_large"},
		{"unknown uids are fine", apiKey, map[string]any{"uids": []string{"never-seen"}, "data": 1}, 200, ""},
		{"an unknown field is refused", apiKey, map[string]any{"uids": []string{"never-seen"}, "data": 1, "extra": true}, 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := call(t, http.MethodPost, "/v1/push", tt.key, tt.body, nil)
			if r.status != tt.status || r.code() != tt.code {
				t.Fatalf("got %d %s, want %d %q", r.status, r.body, tt.status, tt.code)
			}
			if r.header.Get("Content-Type") != "application/json" {
				t.Fatalf("Content-Type %q", r.header.Get("Content-Type"))
			}
		})
	}
	if r := call(t, http.MethodPost, "/v1/broadcast", apiKey, map[string]any{}, nil); r.status != 400 {
		t.Fatalf("broadcast without data: %d %s", r.status, r.body)
	}
	if r := call(t, http.MethodGet, "/v1/users/bad%7Cuid/connections", apiKey, nil, nil); r.status != 400 {
		t.Fatalf("connections of a bad uid: %d %s", r.status, r.body)
	}
	if r := call(t, http.MethodGet, "/v1/nope", apiKey, nil, nil); r.status != 404 || r.code() != "not_found" {
		t.Fatalf("unknown path: %d %s", r.status, r.body)
	}
	// setup's -max-header is 16 KiB.
	big := http.Header{"X-Padding": {strings.Repeat("p", 32<<10)}}
	if r := call(t, http.MethodPost, "/v1/push", apiKey, map[string]any{"uids": []string{"a"}, "data": 1}, big); r.status != 431 || r.code() != "header_too_large" {
		t.Fatalf("header over -max-header: %d %s", r.status, r.body)
	}
}

// TestDeadNodeIsSwept kills a push-server outright: its routes are swept once its znode is gone, and
// pushes report its users offline.
func TestDeadNodeIsSwept(t *testing.T) {
	ps, err := startPushServer("ps-doomed", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ps.kill()
	device(t, ps, "doomed-user", "d")
	if r := push(t, map[string]any{"uids": []string{"doomed-user"}, "data": 1}); r.Results[0].Delivered != 1 {
		t.Fatalf("before the kill: %+v", r.Results[0])
	}
	ps.kill()
	store := routeStore(t)
	eventually(t, "dead node's routes swept", func() error {
		got, err := store.Lookup(context.Background(), []string{"doomed-user"})
		if err != nil || len(got["doomed-user"]) != 0 {
			return fmt.Errorf("routes %+v %v", got, err)
		}
		return nil
	})
	if r := push(t, map[string]any{"uids": []string{"doomed-user"}, "data": 1, "ttl_s": 60}); r.Results[0].Delivered != 0 || !r.Results[0].Stored {
		t.Fatalf("after the kill: %+v, want offline and stored", r.Results[0])
	}
}

// uniq makes a uid no earlier run of the tests used, since the inboxes outlive a run.
func uniq(prefix string) string { return fmt.Sprint(prefix, "-", time.Now().UnixNano()) }

// Both ways of finding repeats (pairwise for a few uids, a map for many) keep each uid's first place.
func TestCheckUIDsDropsRepeatsInOrder(t *testing.T) {
	l := limits{maxUIDs: 100}
	many := make([]string, 0, 40)
	for i := range 20 {
		many = append(many, fmt.Sprintf("u%d", i))
	}
	for _, tc := range []struct{ in, want []string }{
		{[]string{"a"}, []string{"a"}},
		{[]string{"a", "b", "a", "c", "b"}, []string{"a", "b", "c"}},
		{append(slices.Clone(many), many...), many},
		{append(slices.Clone(many), "u3"), many},
	} {
		got, err := l.checkUIDs(tc.in)
		if err != nil || !slices.Equal(got, tc.want) {
			t.Errorf("checkUIDs(%v) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}
