package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldpush/herald/pkg/apiclient"
	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/routes"
	"github.com/heraldpush/herald/pkg/wire"
)

// These tests drive the dispatcher through fakes of the route directory, the node view and the
// push-servers: grouping, stale routes and dead nodes, exactly and fast. main_test.go covers the same
// paths against real servers.

// fakeDirectory is a route directory in memory that records removals. A uid in failing cannot be read,
// as when its Redis Cluster master is down.
type fakeDirectory struct {
	mu       sync.Mutex
	routes   map[string][]routes.Route
	unsynced []string // nodes whose routes are being recorded again
	failing  map[string]bool
	removed  []staleRoute
	err      error
}

func (f *fakeDirectory) LookupFrom(ctx context.Context, uids, nodes []string) (routes.Found, error) {
	found, err := f.Lookup(ctx, uids)
	if err != nil {
		return routes.Found{}, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	res := routes.Found{Routes: found}
	for _, uid := range uids {
		if f.failing[uid] {
			delete(res.Routes, uid)
			res.Failed = append(res.Failed, uid)
			res.Err = errors.New("master down")
		}
	}
	if len(res.Failed) == len(uids) {
		return routes.Found{}, res.Err
	}
	for _, n := range nodes {
		if slices.Contains(f.unsynced, n) {
			res.Unsynced = append(res.Unsynced, n)
		}
	}
	return res, nil
}

func (f *fakeDirectory) Lookup(_ context.Context, uids []string) (map[string][]routes.Route, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return nil, f.err
	}
	out := map[string][]routes.Route{}
	for _, uid := range uids {
		if rs, ok := f.routes[uid]; ok {
			out[uid] = rs
		}
	}
	return out, nil
}

func (f *fakeDirectory) RemoveStale(_ context.Context, uid, node string, connIDs []string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.removed = append(f.removed, staleRoute{uid: uid, node: node, connIDs: connIDs})
	return len(connIDs), nil
}

func (f *fakeDirectory) removals() []staleRoute {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.removed)
}

// fakeNodes is the node view: live nodes by id, the rest dead unless listed as unknown.
type fakeNodes struct {
	live_   map[string]discovery.Node
	unknown map[string]bool
	mu      sync.Mutex
	swept   []string
}

func (f *fakeNodes) resolve(id string) (discovery.Node, nodeState) {
	if n, ok := f.live_[id]; ok {
		return n, nodeLive
	}
	if f.unknown[id] {
		return discovery.Node{}, nodeUnknown
	}
	return discovery.Node{}, nodeDead
}

func (f *fakeNodes) sweep(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.swept = append(f.swept, id)
}

func (f *fakeNodes) all() []discovery.Node {
	var out []discovery.Node
	for _, n := range f.live_ {
		out = append(out, n)
	}
	return out
}

func (f *fakeNodes) live(id string) bool { _, ok := f.live_[id]; return ok }

// fakeNodeAPI answers deliver-batch as a node holding the given connections (node URL → uid → conn
// ids), writing each of them; a URL listed in fail answers with an error.
type fakeNodeAPI struct {
	held  map[string]map[string][]string
	fail  map[string]bool
	mu    sync.Mutex
	got   map[string][]wire.DeliverItem
	forms map[string][]apiclient.BatchForm // per URL, the form of each call
}

func (f *fakeNodeAPI) DeliverBatch(_ context.Context, url string, form apiclient.BatchForm, items []wire.DeliverItem) ([]wire.DeliverResponse, error) {
	f.mu.Lock()
	f.got[url] = append(f.got[url], items...)
	if f.forms == nil {
		f.forms = map[string][]apiclient.BatchForm{}
	}
	f.forms[url] = append(f.forms[url], form)
	f.mu.Unlock()
	if f.fail[url] {
		return nil, errors.New("node down")
	}
	out := make([]wire.DeliverResponse, len(items))
	for i, item := range items {
		for _, uid := range item.UIDs {
			conns := f.held[url][uid]
			out[i].Results = append(out[i].Results, wire.DeliverResult{UID: uid, Delivered: len(conns), ConnIDs: conns})
		}
	}
	return out, nil
}

func (f *fakeNodeAPI) Broadcast(_ context.Context, url, _ string, _ wire.Message) (int, error) {
	if f.fail[url] {
		return 0, errors.New("node down")
	}
	n := 0
	for _, conns := range f.held[url] {
		n += len(conns)
	}
	return n, nil
}

func route(uid, node, conn string) routes.Route {
	return routes.Route{UID: uid, Node: node, ConnID: conn, Device: "d", ConnectedAt: time.UnixMilli(1)}
}

// newTestDispatcher runs a dispatcher over the fakes until the test ends.
func newTestDispatcher(t *testing.T, dir routeDirectory, nodes nodeResolver, api nodeAPI) *dispatcher {
	t.Helper()
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	d, err := newDispatcher(dispatchConfig{
		NodeTimeout: time.Second,
		Lookup:      lookupConfig{MaxUIDs: 100, InFlight: 1, Queue: 100},
		Send:        sendConfig{MaxBytes: 1 << 20, InFlight: 1, Queue: 100},
	}, dir, nodes, api, logger, newMetrics(prometheus.NewRegistry()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return d
}

func TestDeliverGroupsByNodeAndCounts(t *testing.T) {
	a := discovery.Node{ID: "a", InternalURL: "http://a"}
	b := discovery.Node{ID: "b", InternalURL: "http://b"}
	dir := &fakeDirectory{routes: map[string][]routes.Route{
		"u1": {route("u1", "a", "a:1"), route("u1", "b", "b:1")},
		"u2": {route("u2", "a", "a:2"), route("u2", "a", "a:3")},
		"u3": {route("u3", "gone", "gone:1")},
		"u4": {route("u4", "unsure", "unsure:1")},
	}}
	nodes := &fakeNodes{live_: map[string]discovery.Node{"a": a, "b": b}, unknown: map[string]bool{"unsure": true}}
	api := &fakeNodeAPI{got: map[string][]wire.DeliverItem{}, held: map[string]map[string][]string{
		"http://a": {"u1": {"a:1"}, "u2": {"a:2"}}, // a:3 is no longer there
		"http://b": {"u1": {"b:1"}},
	}}
	d := newTestDispatcher(t, dir, nodes, api)
	msg := wire.Message{ID: "m1", Data: json.RawMessage(`1`), TS: 1}

	got, failed, err := d.deliver(context.Background(), "trace-1", msg, []string{"u1", "u2", "u3", "u4", "u5"})
	// u4's node cannot be resolved now and u3's has no znode: not delivered, and reported as failed
	// so a stored message is tried again.
	if slices.Sort(failed); err != nil || !slices.Equal(failed, []string{"u3", "u4"}) {
		t.Fatalf("deliver: failed %v, err %v; want u3 and u4 failed", failed, err)
	}
	want := map[string]int{"u1": 2, "u2": 1}
	for uid, n := range want {
		if got[uid] != n {
			t.Errorf("%s delivered %d, want %d (all: %v)", uid, got[uid], n, got)
		}
	}
	for _, uid := range []string{"u3", "u4", "u5"} {
		if got[uid] != 0 {
			t.Errorf("%s delivered %d, want 0", uid, got[uid])
		}
	}
	// One item per node, naming only that node's users, carrying the trace id.
	itemsA, itemsB := api.got["http://a"], api.got["http://b"]
	if len(itemsA) != 1 || len(itemsB) != 1 {
		t.Fatalf("items: a %v, b %v; want one each", itemsA, itemsB)
	}
	if uids := slices.Sorted(slices.Values(itemsA[0].UIDs)); !slices.Equal(uids, []string{"u1", "u2"}) || itemsA[0].TraceID != "trace-1" {
		t.Errorf("node a got %+v", itemsA[0])
	}
	if !slices.Equal(itemsB[0].UIDs, []string{"u1"}) {
		t.Errorf("node b got %+v", itemsB[0])
	}
	// The route a:3 the node disowned is removed; the dead node is left to its sweep (which waits to
	// see it stay gone); the unknown node's route stays.
	eventually(t, "the disowned route removed", func() error {
		if n := len(dir.removals()); n != 1 {
			return fmt.Errorf("%d removals", n)
		}
		return nil
	})
	if r := dir.removals()[0]; r.uid != "u2" || r.node != "a" || !slices.Equal(r.connIDs, []string{"a:3"}) {
		t.Errorf("removal %+v, want u2's a:3 on a", r)
	}
	if !slices.Equal(nodes.swept, []string{"gone"}) {
		t.Errorf("swept %v, want the dead node", nodes.swept)
	}
}

// A node gets deliver-batch in a form only while its ZooKeeper entry lists it: nodes of an older
// release, or one restarted as one, get the older form.
func TestDeliverSpeaksEachNodesEncoding(t *testing.T) {
	a := discovery.Node{ID: "a", InternalURL: "http://a", Encodings: []string{wire.ContentTypeProtobuf, wire.ContentTypeBatchStream}}
	b := discovery.Node{ID: "b", InternalURL: "http://b"}
	dir := &fakeDirectory{routes: map[string][]routes.Route{"u1": {route("u1", "a", "a:1")}, "u2": {route("u2", "b", "b:1")}}}
	nodes := &fakeNodes{live_: map[string]discovery.Node{"a": a, "b": b}}
	api := &fakeNodeAPI{got: map[string][]wire.DeliverItem{}, held: map[string]map[string][]string{
		"http://a": {"u1": {"a:1"}}, "http://b": {"u2": {"b:1"}},
	}}
	d := newTestDispatcher(t, dir, nodes, api)
	push := func() {
		t.Helper()
		got, failed, err := d.deliver(context.Background(), "", wire.Message{ID: "m", Data: json.RawMessage(`1`)}, []string{"u1", "u2"})
		if err != nil || len(failed) > 0 || got["u1"] != 1 || got["u2"] != 1 {
			t.Fatalf("deliver: %v failed %v err %v", got, failed, err)
		}
	}
	restart := func(encodings ...string) {
		nodes.mu.Lock()
		a.Encodings = encodings // a restarted as another release at the same address
		nodes.live_["a"] = a
		nodes.mu.Unlock()
	}
	push()
	if !slices.Equal(api.forms["http://a"], []apiclient.BatchForm{apiclient.BatchStream}) || !slices.Equal(api.forms["http://b"], []apiclient.BatchForm{apiclient.BatchJSON}) {
		t.Fatalf("calls: %v, want a on a stream and b in JSON", api.forms)
	}
	restart(wire.ContentTypeProtobuf)
	push()
	restart()
	push()
	if want := []apiclient.BatchForm{apiclient.BatchStream, apiclient.BatchBinary, apiclient.BatchJSON}; !slices.Equal(api.forms["http://a"], want) {
		t.Fatalf("calls to a as it listed fewer forms: %v, want %v", api.forms["http://a"], want)
	}
}

func TestDeliverFailingNodeCostsOnlyItsUsers(t *testing.T) {
	a := discovery.Node{ID: "a", InternalURL: "http://a"}
	b := discovery.Node{ID: "b", InternalURL: "http://b"}
	dir := &fakeDirectory{routes: map[string][]routes.Route{
		"u1": {route("u1", "a", "a:1")},
		"u2": {route("u2", "b", "b:1")},
	}}
	api := &fakeNodeAPI{got: map[string][]wire.DeliverItem{}, fail: map[string]bool{"http://b": true}, held: map[string]map[string][]string{
		"http://a": {"u1": {"a:1"}},
	}}
	d := newTestDispatcher(t, dir, &fakeNodes{live_: map[string]discovery.Node{"a": a, "b": b}}, api)
	got, failed, err := d.deliver(context.Background(), "", wire.Message{ID: "m", Data: json.RawMessage(`1`)}, []string{"u1", "u2"})
	if err != nil {
		t.Fatal(err)
	}
	if got["u1"] != 1 || got["u2"] != 0 || !slices.Equal(failed, []string{"u2"}) {
		t.Fatalf("delivered %v, failed %v; want u1 1, u2 0 and failed", got, failed)
	}
	time.Sleep(50 * time.Millisecond)
	if r := dir.removals(); len(r) != 0 {
		t.Fatalf("a failing node's routes were removed: %+v", r)
	}
}

// On Redis Cluster a failing master costs the users of its slots only: the others are delivered, the
// unreadable ones count as failed (a stored message is tried again), and a push fails only when none of
// its users could be read. Pushes batched into one lookup get each their own share of the failure.
func TestDeliverUnreadableUIDsCostOnlyThemselves(t *testing.T) {
	a := discovery.Node{ID: "a", InternalURL: "http://a"}
	dir := &fakeDirectory{
		routes:  map[string][]routes.Route{"u1": {route("u1", "a", "a:1")}, "u2": {route("u2", "a", "a:2")}},
		failing: map[string]bool{"u2": true, "u3": true},
	}
	api := &fakeNodeAPI{got: map[string][]wire.DeliverItem{}, held: map[string]map[string][]string{"http://a": {"u1": {"a:1"}, "u2": {"a:2"}}}}
	d := newTestDispatcher(t, dir, &fakeNodes{live_: map[string]discovery.Node{"a": a}}, api)
	msg := wire.Message{ID: "m", Data: json.RawMessage(`1`)}
	got, failed, err := d.deliver(context.Background(), "", msg, []string{"u1", "u2", "u3"})
	if slices.Sort(failed); err != nil || got["u1"] != 1 || got["u2"] != 0 || !slices.Equal(failed, []string{"u2", "u3"}) {
		t.Fatalf("deliver: delivered %v, failed %v, err %v; want u1 delivered, u2 and u3 failed", got, failed, err)
	}
	if _, _, err := d.deliver(context.Background(), "", msg, []string{"u2", "u3"}); err == nil {
		t.Fatal("a push none of whose users could be read succeeded")
	}

	// The same through one batched lookup: the batcher splits the shared answer per push.
	res, err := d.lookups.lookupBatch(context.Background(), [][]string{{"u1", "u2"}, {"u3"}, {"u1"}})
	if err != nil {
		t.Fatal(err)
	}
	if r := res[0]; r.err != nil || len(r.Routes["u1"]) != 1 || !slices.Equal(r.Failed, []string{"u2"}) {
		t.Errorf("first push: %+v, err %v; want u1's route and u2 failed", r.Found, r.err)
	}
	if res[1].err == nil {
		t.Error("second push (only an unreadable uid) did not fail")
	}
	if r := res[2]; r.err != nil || len(r.Failed) != 0 || len(r.Routes["u1"]) != 1 {
		t.Errorf("third push: %+v, err %v; want u1's route only", r.Found, r.err)
	}
}

// While a live node has not marked its routes recorded (Redis lost them and the node is recording them
// again), a user with no route found may be connected there, and one with routes may have another
// device there: every user counts as failed, so a stored message is tried again.
func TestDeliverCountsEveryUserFailedWhileANodeResyncs(t *testing.T) {
	a := discovery.Node{ID: "a", InternalURL: "http://a"}
	b := discovery.Node{ID: "b", InternalURL: "http://b"}
	dir := &fakeDirectory{routes: map[string][]routes.Route{"u1": {route("u1", "a", "a:1")}}, unsynced: []string{"b"}}
	api := &fakeNodeAPI{got: map[string][]wire.DeliverItem{}, held: map[string]map[string][]string{"http://a": {"u1": {"a:1"}}}}
	d := newTestDispatcher(t, dir, &fakeNodes{live_: map[string]discovery.Node{"a": a, "b": b}}, api)
	msg := wire.Message{ID: "m", Data: json.RawMessage(`1`)}
	got, failed, err := d.deliver(context.Background(), "", msg, []string{"u1", "u2"})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Sort(failed); got["u1"] != 1 || !slices.Equal(failed, []string{"u1", "u2"}) {
		t.Fatalf("delivered %v, failed %v; want u1 delivered and both failed", got, failed)
	}
	// Once b has marked its routes, a user without routes is offline in fact.
	dir.mu.Lock()
	dir.unsynced = nil
	dir.mu.Unlock()
	if _, failed, err = d.deliver(context.Background(), "", msg, []string{"u1", "u2"}); err != nil || len(failed) != 0 {
		t.Fatalf("after the resync: failed %v, err %v; want none", failed, err)
	}
}

func TestDeliverFailsWhenRoutesCannotBeRead(t *testing.T) {
	dir := &fakeDirectory{err: errors.New("redis down")}
	d := newTestDispatcher(t, dir, &fakeNodes{}, &fakeNodeAPI{got: map[string][]wire.DeliverItem{}})
	if _, _, err := d.deliver(context.Background(), "", wire.Message{ID: "m", Data: json.RawMessage(`1`)}, []string{"u1"}); err == nil {
		t.Fatal("deliver succeeded without routes")
	}
}

func TestBroadcastSumsLiveNodes(t *testing.T) {
	nodes := &fakeNodes{live_: map[string]discovery.Node{
		"a": {ID: "a", InternalURL: "http://a"}, "b": {ID: "b", InternalURL: "http://b"}, "c": {ID: "c", InternalURL: "http://c"},
	}}
	api := &fakeNodeAPI{got: map[string][]wire.DeliverItem{}, fail: map[string]bool{"http://c": true}, held: map[string]map[string][]string{
		"http://a": {"u1": {"a:1", "a:2"}}, "http://b": {"u2": {"b:1"}},
	}}
	d := newTestDispatcher(t, &fakeDirectory{}, nodes, api)
	if n := d.broadcast(context.Background(), "", wire.Message{ID: "m", Data: json.RawMessage(`1`)}); n != 3 {
		t.Fatalf("broadcast reached %d, want 3 (a failing node adds none)", n)
	}
}

func TestDisowned(t *testing.T) {
	for _, tt := range []struct {
		routed, held, want []string
	}{
		{routed: []string{"a", "b"}, held: []string{"a", "b"}, want: nil},
		{routed: []string{"a", "b"}, held: []string{"b", "c"}, want: []string{"a"}},
		{routed: []string{"a"}, held: nil, want: []string{"a"}},
	} {
		if got := disowned(tt.routed, tt.held); !slices.Equal(got, tt.want) {
			t.Errorf("disowned(%v, %v) = %v, want %v", tt.routed, tt.held, got, tt.want)
		}
	}
}
