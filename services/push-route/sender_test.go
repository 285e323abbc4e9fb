package main

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldpush/herald/pkg/apiclient"
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
		one, err := apiclient.Encode(wire.DeliverBatchRequest{Items: []wire.DeliverItem{item}})
		if err != nil {
			t.Fatal(err)
		}
		if got := len(one) - len(`{"items":[]}`+"\n"); got > itemBytes(item) {
			t.Errorf("%s: item encodes to %d bytes, estimate %d", name, got, itemBytes(item))
		}
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
	if _, err := store.Register(context.Background(), routes.Route{UID: good, ConnID: "ps-a:9", Node: "ps-a", Device: "d", ConnectedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	l := &routeLookup{dir: store, live: func() []string { return nil }, metrics: newMetrics(prometheus.NewRegistry())}
	out, err := l.lookupBatch(context.Background(), [][]string{{bad}, {good}})
	if err != nil {
		t.Fatal(err)
	}
	if out[0].err == nil {
		t.Fatalf("the wrong-type key's push got no error: %+v", out[0])
	}
	if out[1].err != nil || len(out[1].Routes[good]) != 1 {
		t.Fatalf("the healthy push got %+v, want its one route", out[1])
	}
	var refused interface{ RedisError() }
	if !errors.As(out[0].err, &refused) {
		t.Fatalf("error %v is not Redis's refusal", out[0].err)
	}
}
