package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/routes"
	"github.com/heraldpush/herald/pkg/wire"
)

// TestItemBytesBoundsTheEncodedBody checks the estimate batches are sized by against what is really
// sent, for ordinary items and for the worst cases of escaping.
func TestItemBytesBoundsTheEncodedBody(t *testing.T) {
	uids := func(n int) []string {
		out := make([]string, n)
		for i := range out {
			out[i] = strings.Repeat("u", 1+i%128)
		}
		return out
	}
	for name, item := range map[string]wire.DeliverItem{
		"small":        {Message: wire.Message{ID: "01JABC", Data: json.RawMessage(`{"t":1}`), TS: 1}, UIDs: []string{"a"}},
		"no trace":     {Message: wire.Message{ID: strings.Repeat("i", 128), Data: json.RawMessage(`"x"`), TS: 1 << 62}, UIDs: uids(1000)},
		"html in data": {Message: wire.Message{ID: "m", Data: json.RawMessage(`"` + strings.Repeat("<&>", 20000) + `"`), TS: 1}, UIDs: uids(3)},
		"escapes":      {Message: wire.Message{ID: "m", Data: json.RawMessage(`"\u2028\u0000"`), TS: 1}, UIDs: uids(1), TraceID: strings.Repeat(`"\`, 64)},
		"spaces":       {Message: wire.Message{ID: "m", Data: json.RawMessage("{ \"a\" : [ 1 , 2 ] }"), TS: 1}, UIDs: uids(2), TraceID: "t"},
	} {
		one, err := encodeBody(wire.DeliverBatchRequest{Items: []wire.DeliverItem{item}})
		if err != nil {
			t.Fatal(err)
		}
		if got := len(one) - len(`{"items":[]}`+"\n"); got > itemBytes(item) {
			t.Errorf("%s: item encodes to %d bytes, estimate %d", name, got, itemBytes(item))
		}
	}
}

// TestOlderPushServerGetsOneCallPerPush stands in for a push-server from before deliver-batch (404
// there): push-route delivers to it through the single-message endpoint instead.
func TestOlderPushServerGetsOneCallPerPush(t *testing.T) {
	var singles atomic.Int64
	old := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != wire.PathDeliver || r.Header.Get(wire.SecretHeader) != secret {
			http.NotFound(w, r)
			return
		}
		var req wire.DeliverRequest
		json.NewDecoder(r.Body).Decode(&req)
		singles.Add(1)
		resp := wire.DeliverResponse{}
		for _, uid := range req.UIDs {
			resp.Results = append(resp.Results, wire.DeliverResult{UID: uid, Delivered: 1, ConnIDs: []string{"ps-old:1"}})
		}
		json.NewEncoder(w).Encode(resp)
	}))
	defer old.Close()
	zk := dialZK(t)
	if _, err := zk.Register(context.Background(), discovery.Node{ID: "ps-old", WSURL: "ws://127.0.0.1:1/ws", InternalURL: old.URL, Weight: 1}); err != nil {
		t.Fatal(err)
	}
	uid := uniq("old-node")
	if err := routeStore(t).Register(context.Background(), routes.Route{UID: uid, ConnID: "ps-old:1", Node: "ps-old", Device: "d", ConnectedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if r := push(t, map[string]any{"uids": []string{uid}, "data": "hi"}); r.Results[0].Delivered != 1 {
			t.Fatalf("result %+v, want 1 delivered through the old endpoint", r.Results[0])
		}
	}
	if n := singles.Load(); n != 3 {
		t.Fatalf("%d single deliver calls, want 3", n)
	}
}

// TestRefusedLookupFailsOnlyItsOwnPush shares one lookup pipeline between a push naming a key Redis
// refuses (a route key of the wrong type) and one naming a healthy user.
func TestRefusedLookupFailsOnlyItsOwnPush(t *testing.T) {
	store := routeStore(t)
	bad, good := uniq("wrongtype"), uniq("healthy")
	rdb := redisClient(t)
	if err := rdb.Set(context.Background(), "herald:route:{"+bad+"}", "not a hash", time.Minute).Err(); err != nil {
		t.Fatal(err)
	}
	if err := store.Register(context.Background(), routes.Route{UID: good, ConnID: "ps-a:9", Node: "ps-a", Device: "d", ConnectedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	d := &dispatcher{routes: store, metrics: newMetrics(prometheus.NewRegistry())}
	out, err := d.lookupBatch(context.Background(), [][]string{{bad}, {good}})
	if err != nil {
		t.Fatal(err)
	}
	if out[0].err == nil {
		t.Fatalf("the wrong-type key's push got no error: %+v", out[0])
	}
	if out[1].err != nil || len(out[1].routes[good]) != 1 {
		t.Fatalf("the healthy push got %+v, want its one route", out[1])
	}
	var refused interface{ RedisError() }
	if !errors.As(out[0].err, &refused) {
		t.Fatalf("error %v is not Redis's refusal", out[0].err)
	}
}
