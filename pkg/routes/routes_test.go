package routes

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/lua"
	"github.com/heraldpush/herald/pkg/testenv"
	"github.com/redis/go-redis/v9"
)

var t0 = time.UnixMilli(1_700_000_000_123)

func rt(uid, conn, node, device string, at time.Time) Route {
	return Route{UID: uid, ConnID: conn, Node: node, Device: device, ConnectedAt: at}
}

func register(tb testing.TB, s *Store, rs ...Route) {
	tb.Helper()
	for _, r := range rs {
		if _, err := s.Register(context.Background(), r); err != nil {
			tb.Fatalf("register %+v: %v", r, err)
		}
	}
}

// diffRoutes describes how got differs from want, or returns "" when they match.
func diffRoutes(got, want map[string][]Route) string {
	var d []string
	for uid, w := range want {
		g, ok := got[uid]
		if !ok {
			d = append(d, fmt.Sprintf("uid %q missing", uid))
			continue
		}
		if len(g) != len(w) {
			d = append(d, fmt.Sprintf("uid %q: %d routes, want %d: %+v", uid, len(g), len(w), g))
			continue
		}
		for i := range w {
			if g[i].UID != w[i].UID || g[i].ConnID != w[i].ConnID || g[i].Node != w[i].Node ||
				g[i].Device != w[i].Device || !g[i].ConnectedAt.Equal(w[i].ConnectedAt) {
				d = append(d, fmt.Sprintf("uid %q route %d: got %+v, want %+v", uid, i, g[i], w[i]))
			}
		}
	}
	for uid := range got {
		if _, ok := want[uid]; !ok {
			d = append(d, fmt.Sprintf("unexpected uid %q: %+v", uid, got[uid]))
		}
	}
	slices.Sort(d)
	return strings.Join(d, "\n")
}

func lookup(tb testing.TB, s *Store, uids ...string) map[string][]Route {
	tb.Helper()
	got, err := s.Lookup(context.Background(), uids)
	if err != nil {
		tb.Fatalf("lookup %v: %v", uids, err)
	}
	return got
}

func fields(tb testing.TB, rdb *redis.Client, uid string) map[string]string {
	tb.Helper()
	m, err := rdb.HGetAll(context.Background(), routeKey(uid)).Result()
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

func indexed(tb testing.TB, rdb *redis.Client, node, uid string) bool {
	tb.Helper()
	ok, err := rdb.SIsMember(context.Background(), indexKeyOf(node, uid), uid).Result()
	if err != nil {
		tb.Fatal(err)
	}
	return ok
}

// indexSize counts the uids in every shard of node's index.
func indexSize(tb testing.TB, rdb *redis.Client, node string) int64 {
	tb.Helper()
	var n int64
	for _, key := range indexKeys(node) {
		c, err := rdb.SCard(context.Background(), key).Result()
		if err != nil {
			tb.Fatal(err)
		}
		n += c
	}
	return n
}

func TestRegisterLookup(t *testing.T) {
	s, rdb, _ := newStore(t)
	register(t, s,
		rt("alice", "c1", "n1", "phone", t0),
		rt("alice", "c2", "n1", "web", t0.Add(time.Second)),
		// Sub-millisecond precision is dropped: the contract stores milliseconds.
		rt("bob", "c3", "n2", "tablet.v2@home:1-x", t0.Add(1500*time.Microsecond)),
	)

	// The stored values are a public contract: node-id|device|connected_at_ms.
	wantRaw := map[string]map[string]string{
		"alice": {"c1": "n1|phone|1700000000123", "c2": "n1|web|1700000001123"},
		"bob":   {"c3": "n2|tablet.v2@home:1-x|1700000000124"},
	}
	for uid, want := range wantRaw {
		got := fields(t, rdb, uid)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("hash of %s = %v, want %v", uid, got, want)
		}
	}
	if keys := rdb.Keys(context.Background(), "herald:route:*").Val(); len(keys) != 2 {
		t.Errorf("route keys %v, want 2", keys)
	}
	for _, c := range []struct{ node, uid string }{{"n1", "alice"}, {"n2", "bob"}} {
		if !indexed(t, rdb, c.node, c.uid) {
			t.Errorf("%s's index lacks %s", c.node, c.uid)
		}
	}

	alice := []Route{rt("alice", "c1", "n1", "phone", t0), rt("alice", "c2", "n1", "web", t0.Add(time.Second))}
	bob := []Route{rt("bob", "c3", "n2", "tablet.v2@home:1-x", time.UnixMilli(1_700_000_000_124))}
	tests := []struct {
		name string
		uids []string
		want map[string][]Route
	}{
		{"one uid", []string{"alice"}, map[string][]Route{"alice": alice}},
		{"several uids", []string{"alice", "bob"}, map[string][]Route{"alice": alice, "bob": bob}},
		{"unknown uid absent", []string{"nobody", "bob"}, map[string][]Route{"bob": bob}},
		{"only unknown", []string{"nobody"}, map[string][]Route{}},
		{"duplicate uids", []string{"bob", "bob"}, map[string][]Route{"bob": bob}},
		{"no uids", nil, map[string][]Route{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if d := diffRoutes(lookup(t, s, tt.uids...), tt.want); d != "" {
				t.Error(d)
			}
		})
	}

	uids, err := s.NodeUIDs(context.Background(), "n1")
	if err != nil || !slices.Equal(uids, []string{"alice"}) {
		t.Errorf("NodeUIDs(n1) = %v, %v; want [alice]", uids, err)
	}
}

// A node's synced mark is read with the lookup; a Redis that lost its data lost the mark too.
func TestSyncedMark(t *testing.T) {
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	register(t, s, rt("alice", "c1", "n1", "phone", t0))
	if ok, err := s.Synced(ctx, "n1"); err != nil || ok {
		t.Fatalf("synced before any mark: %v, %v", ok, err)
	}
	if err := s.MarkSynced(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	if ok, err := s.Synced(ctx, "n1"); err != nil || !ok {
		t.Fatalf("synced after the mark: %v, %v", ok, err)
	}
	res, err := s.LookupFrom(ctx, []string{"alice", "bob"}, []string{"n1", "n2"})
	if err != nil || len(res.Routes["alice"]) != 1 || len(res.Routes["bob"]) != 0 || !slices.Equal(res.Unsynced, []string{"n2"}) || len(res.Failed) != 0 {
		t.Fatalf("lookup: %+v, err %v; want alice's route and n2 unsynced", res, err)
	}
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if res, err = s.LookupFrom(ctx, []string{"alice"}, []string{"n1", "n2"}); err != nil || !slices.Equal(res.Unsynced, []string{"n1", "n2"}) {
		t.Fatalf("after the data was lost: unsynced %v, err %v; want both", res.Unsynced, err)
	}
}

// RegisterAllPending says which re-recorded routes belong to users with a pending marker.
func TestRegisterAllPending(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	if err := s.MarkPending(ctx, []string{"kim"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	kim, jo := rt("kim", "c1", "n1", "p", t0), rt("jo", "c2", "n1", "p", t0)
	pending, err := s.RegisterAllPending(ctx, []Route{kim, jo})
	if err != nil || len(pending) != 1 || pending[0] != kim {
		t.Fatalf("pending %v, %v; want kim's route only", pending, err)
	}
}

func TestTwoNodesSameUID(t *testing.T) {
	s, rdb, _ := newStore(t)
	// One user's devices may land on different nodes (a reconnect after the ring changed).
	register(t, s, rt("carol", "a", "n1", "phone", t0), rt("carol", "b", "n2", "web", t0.Add(time.Millisecond)))

	want := map[string][]Route{"carol": {
		rt("carol", "a", "n1", "phone", t0),
		rt("carol", "b", "n2", "web", t0.Add(time.Millisecond)),
	}}
	if d := diffRoutes(lookup(t, s, "carol"), want); d != "" {
		t.Error(d)
	}
	for _, node := range []string{"n1", "n2"} {
		if !indexed(t, rdb, node, "carol") {
			t.Errorf("%s's index lacks carol", node)
		}
	}
}

func TestUnregister(t *testing.T) {
	s, rdb, _ := newStore(t)
	register(t, s,
		rt("alice", "c1", "n1", "phone", t0),
		rt("alice", "c2", "n1", "web", t0),
		rt("alice", "c3", "n2", "tablet", t0),
	)

	// The steps run in order, each on the state the previous one left.
	steps := []struct {
		name        string
		r           Route
		wantRemoved bool
		wantFields  []string
		wantIndexed map[string]bool // node → uid still in its index
	}{
		{"another node cannot remove", rt("alice", "c1", "n2", "", time.Time{}), false,
			[]string{"c1", "c2", "c3"}, map[string]bool{"n1": true, "n2": true}},
		{"owner removes, keeps index while it holds another", rt("alice", "c1", "n1", "", time.Time{}), true,
			[]string{"c2", "c3"}, map[string]bool{"n1": true, "n2": true}},
		{"repeat removes nothing", rt("alice", "c1", "n1", "", time.Time{}), false,
			[]string{"c2", "c3"}, map[string]bool{"n1": true, "n2": true}},
		{"unknown conn", rt("alice", "zz", "n1", "", time.Time{}), false,
			[]string{"c2", "c3"}, map[string]bool{"n1": true, "n2": true}},
		{"node's last field leaves its index only", rt("alice", "c2", "n1", "", time.Time{}), true,
			[]string{"c3"}, map[string]bool{"n1": false, "n2": true}},
		{"last field deletes the hash", rt("alice", "c3", "n2", "", time.Time{}), true,
			nil, map[string]bool{"n1": false, "n2": false}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			removed, err := s.Unregister(context.Background(), st.r)
			if err != nil {
				t.Fatal(err)
			}
			if removed != st.wantRemoved {
				t.Errorf("removed = %v, want %v", removed, st.wantRemoved)
			}
			var got []string
			for f := range fields(t, rdb, "alice") {
				got = append(got, f)
			}
			slices.Sort(got)
			if !slices.Equal(got, st.wantFields) {
				t.Errorf("fields %v, want %v", got, st.wantFields)
			}
			for node, want := range st.wantIndexed {
				if got := indexed(t, rdb, node, "alice"); got != want {
					t.Errorf("alice in %s's index = %v, want %v", node, got, want)
				}
			}
		})
	}
	if n := rdb.Exists(context.Background(), routeKey("alice")).Val(); n != 0 {
		t.Errorf("empty route hash still exists")
	}
}

func TestUnregisterReusedConnID(t *testing.T) {
	s, rdb, _ := newStore(t)
	// n2 recorded the same conn_id after n1 (n1 restarted and its old connection ids were reused).
	register(t, s, rt("dave", "c", "n1", "phone", t0), rt("dave", "c", "n2", "phone", t0.Add(time.Second)))

	removed, err := s.Unregister(context.Background(), rt("dave", "c", "n1", "phone", t0))
	if err != nil {
		t.Fatal(err)
	}
	if removed {
		t.Error("n1 removed a field that names n2")
	}
	if got := fields(t, rdb, "dave")["c"]; got != "n2|phone|1700000001123" {
		t.Errorf("field = %q, want n2's value", got)
	}
	if indexed(t, rdb, "n1", "dave") {
		t.Error("n1's index still names dave, though n1 holds nothing of dave")
	}
	if !indexed(t, rdb, "n2", "dave") {
		t.Error("n2's index lost dave")
	}
}

func TestRemoveStale(t *testing.T) {
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	register(t, s,
		rt("erin", "c1", "n1", "a", t0), rt("erin", "c2", "n1", "b", t0), rt("erin", "c3", "n1", "c", t0),
		rt("erin", "c4", "n2", "d", t0),
	)

	tests := []struct {
		name        string
		node        string
		conns       []string
		want        int
		wantFields  int
		wantIndexed bool // erin in node's index afterwards
	}{
		{"removes only the node's fields", "n1", []string{"c1", "c2", "c4", "missing"}, 2, 2, true},
		{"nothing to remove", "n1", nil, 0, 2, true},
		{"node's last field", "n1", []string{"c3"}, 1, 1, false},
		{"other node's last field", "n2", []string{"c4"}, 1, 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := s.RemoveStale(ctx, "erin", tt.node, tt.conns)
			if err != nil {
				t.Fatal(err)
			}
			if n != tt.want {
				t.Errorf("removed %d, want %d", n, tt.want)
			}
			if got := len(fields(t, rdb, "erin")); got != tt.wantFields {
				t.Errorf("%d fields left, want %d", got, tt.wantFields)
			}
			if got := indexed(t, rdb, tt.node, "erin"); got != tt.wantIndexed {
				t.Errorf("erin in %s's index = %v, want %v", tt.node, got, tt.wantIndexed)
			}
		})
	}
}

func TestSweepNode(t *testing.T) {
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	var rs []Route
	var uids []string
	want := map[string][]Route{}
	for i := range 50 {
		uid := fmt.Sprintf("u%d", i)
		uids = append(uids, uid)
		rs = append(rs, rt(uid, "a", "dead", "phone", t0))
		if i < 10 {
			rs = append(rs, rt(uid, "b", "dead", "web", t0))
		}
		if i < 20 {
			r := rt(uid, "c", "alive", "web", t0)
			rs = append(rs, r)
			want[uid] = []Route{r}
		}
	}
	if err := s.RegisterAll(ctx, rs); err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"dead", "alive"} {
		if err := s.MarkSynced(ctx, node); err != nil {
			t.Fatal(err)
		}
	}

	n, err := s.SweepNode(ctx, "dead")
	if err != nil || n != 60 {
		t.Fatalf("SweepNode = %d, %v; want 60", n, err)
	}
	// A swept node that was only cut off must record its routes again: its mark is gone, the
	// others' stays.
	if res, err := s.LookupFrom(ctx, uids[:1], []string{"dead", "alive"}); err != nil || !slices.Equal(res.Unsynced, []string{"dead"}) {
		t.Fatalf("after the sweep: unsynced %v, err %v; want the swept node only", res.Unsynced, err)
	}
	if d := diffRoutes(lookup(t, s, uids...), want); d != "" {
		t.Error(d)
	}
	if keys := indexSize(t, rdb, "dead"); keys != 0 {
		t.Errorf("dead node's index has %d uids after the sweep", keys)
	}
	if got := indexSize(t, rdb, "alive"); got != 20 {
		t.Errorf("alive node's index has %d uids, want 20", got)
	}

	for _, node := range []string{"dead", "never-seen"} {
		if n, err := s.SweepNode(ctx, node); err != nil || n != 0 {
			t.Errorf("SweepNode(%s) again = %d, %v; want 0", node, n, err)
		}
	}
}

func TestSweepNodeConcurrent(t *testing.T) {
	s, _, _ := newStore(t)
	ctx := context.Background()
	const users = 1200 // more than two SSCAN batches
	var rs []Route
	var uids []string
	want := map[string][]Route{}
	for i := range users {
		uid := fmt.Sprintf("user-%d", i)
		uids = append(uids, uid)
		keep := rt(uid, "live", "n4", "web", t0)
		rs = append(rs, rt(uid, "gone", "n3", "phone", t0), keep)
		want[uid] = []Route{keep}
	}
	if err := s.RegisterAll(ctx, rs); err != nil {
		t.Fatal(err)
	}

	const sweepers = 4
	counts := make([]int, sweepers)
	errs := make([]error, sweepers)
	var wg sync.WaitGroup
	for i := range sweepers {
		wg.Go(func() { counts[i], errs[i] = s.SweepNode(ctx, "n3") })
	}
	wg.Wait()
	total := 0
	for i := range sweepers {
		if errs[i] != nil {
			t.Errorf("sweeper %d: %v", i, errs[i])
		}
		total += counts[i]
	}
	// Every field is removed by exactly one of the sweepers.
	if total != users {
		t.Errorf("sweepers removed %d fields in all (%v), want %d", total, counts, users)
	}
	if d := diffRoutes(lookup(t, s, uids...), want); d != "" {
		t.Error(d)
	}
}

func TestRegisterAll(t *testing.T) {
	s, _, rec := newStore(t)
	ctx := context.Background()
	register(t, s, rt("warm", "w", "n0", "x", t0)) // caches the script, so round trips below are exact

	const n, users, nodes = 2000, 700, 3
	rs := make([]Route, n)
	want := map[string][]Route{"warm": {rt("warm", "w", "n0", "x", t0)}}
	byNode := map[string]map[string]bool{}
	uids := []string{"warm"}
	for i := range n {
		uid, node := fmt.Sprintf("user-%03d", i%users), fmt.Sprintf("node-%d", i%nodes)
		rs[i] = rt(uid, fmt.Sprintf("conn-%04d", i), node, "phone", t0.Add(time.Duration(i)*time.Millisecond))
		want[uid] = append(want[uid], rs[i])
		if byNode[node] == nil {
			byNode[node] = map[string]bool{}
		}
		byNode[node][uid] = true
		if i < users {
			uids = append(uids, uid)
		}
	}
	rec.roundTrips()
	if err := s.RegisterAll(ctx, rs); err != nil {
		t.Fatal(err)
	}
	// Two per batch: the index entries, then the routes (so no route is ever written unindexed).
	if got := rec.roundTrips(); got != 2*n/registerBatch {
		t.Errorf("RegisterAll took %d round trips, want %d", got, 2*n/registerBatch)
	}
	if d := diffRoutes(lookup(t, s, uids...), want); d != "" {
		t.Error(d)
	}
	for node, set := range byNode {
		got, err := s.NodeUIDs(ctx, node)
		if err != nil {
			t.Fatal(err)
		}
		var wantUIDs []string
		for uid := range set {
			wantUIDs = append(wantUIDs, uid)
		}
		slices.Sort(got)
		slices.Sort(wantUIDs)
		if !slices.Equal(got, wantUIDs) {
			t.Errorf("NodeUIDs(%s): %d uids, want %d", node, len(got), len(wantUIDs))
		}
	}
}

func TestRoundTrips(t *testing.T) {
	s, rdb, rec := newStore(t)
	ctx := context.Background()
	var rs []Route
	var uids []string
	for i := range 1000 {
		uid := fmt.Sprintf("user-%d", i)
		uids = append(uids, uid)
		rs = append(rs, rt(uid, "c", fmt.Sprintf("n%d", i%4), "web", t0))
	}
	if err := s.RegisterAll(ctx, rs); err != nil {
		t.Fatal(err)
	}
	lookup(t, s, "warm-up") // caches the script
	rec.roundTrips()

	got := lookup(t, s, append(uids, "unknown-1", "unknown-2")...)
	if n := rec.roundTrips(); n != 1 {
		t.Errorf("Lookup of %d uids took %d round trips, want 1", len(uids)+2, n)
	}
	if len(got) != len(uids) {
		t.Errorf("Lookup found %d uids, want %d", len(got), len(uids))
	}

	register(t, s, rt("late", "c", "n1", "web", t0))
	if n := rec.roundTrips(); n != 1 {
		t.Errorf("Register took %d round trips, want 1", n)
	}

	// A Redis that lost its script cache (restart, failover) costs a script call one extra round
	// trip, once; a lookup runs no script.
	if err := rdb.ScriptFlush(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if got := lookup(t, s, uids...); len(got) != len(uids) {
		t.Errorf("after SCRIPT FLUSH Lookup found %d uids, want %d", len(got), len(uids))
	}
	if n := rec.roundTrips(); n != 1 {
		t.Errorf("Lookup after SCRIPT FLUSH took %d round trips, want 1", n)
	}
	register(t, s, rt("later", "c", "n1", "web", t0))
	if n := rec.roundTrips(); n != 2 {
		t.Errorf("Register after SCRIPT FLUSH took %d round trips, want 2", n)
	}
	register(t, s, rt("latest", "c", "n1", "web", t0))
	if n := rec.roundTrips(); n != 1 {
		t.Errorf("second Register after SCRIPT FLUSH took %d round trips, want 1", n)
	}
}

func TestLookupSkipsMalformed(t *testing.T) {
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	good := rt("frank", "ok", "n1", "phone", t0)
	register(t, s, good)
	bad := map[string]string{
		"garbage":    "garbage",
		"two parts":  "n1|phone",
		"bad ms":     "n1|phone|soon",
		"empty node": "|phone|1700000000000",
		"four parts": "n1|a|b|1700000000000",
		"empty":      "",
	}
	for field, v := range bad {
		if err := rdb.HSet(ctx, routeKey("frank"), field, v).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := rdb.HSet(ctx, routeKey("gina"), "x", "nonsense").Err(); err != nil {
		t.Fatal(err)
	}

	before := s.Malformed()
	got := lookup(t, s, "frank", "gina")
	if d := diffRoutes(got, map[string][]Route{"frank": {good}}); d != "" {
		t.Error(d)
	}
	if n := s.Malformed() - before; n != int64(len(bad))+1 {
		t.Errorf("counted %d malformed values, want %d", n, len(bad)+1)
	}
}

func TestValidation(t *testing.T) {
	s, _, rec := newStore(t)
	ctx := context.Background()
	good := rt("u", "c", "n", "d", t0)
	with := func(f func(*Route)) Route { r := good; f(&r); return r }
	tests := []struct {
		name string
		call func() error
	}{
		{"register empty uid", func() error { _, err := s.Register(ctx, with(func(r *Route) { r.UID = "" })); return err }},
		{"register empty node", func() error { _, err := s.Register(ctx, with(func(r *Route) { r.Node = "" })); return err }},
		{"register node with |", func() error { _, err := s.Register(ctx, with(func(r *Route) { r.Node = "a|b" })); return err }},
		{"register empty conn id", func() error { _, err := s.Register(ctx, with(func(r *Route) { r.ConnID = "" })); return err }},
		{"register device with |", func() error { _, err := s.Register(ctx, with(func(r *Route) { r.Device = "a|b" })); return err }},
		{"register all, one bad", func() error {
			return s.RegisterAll(ctx, []Route{good, with(func(r *Route) { r.UID = "" })})
		}},
		{"unregister node with |", func() error {
			_, err := s.Unregister(ctx, with(func(r *Route) { r.Node = "n|" }))
			return err
		}},
		{"unregister empty conn id", func() error {
			_, err := s.Unregister(ctx, with(func(r *Route) { r.ConnID = "" }))
			return err
		}},
		{"remove stale empty uid", func() error { _, err := s.RemoveStale(ctx, "", "n", []string{"c"}); return err }},
		{"lookup empty uid", func() error { _, err := s.Lookup(ctx, []string{"a", ""}); return err }},
		{"sweep empty node", func() error { _, err := s.SweepNode(ctx, ""); return err }},
		{"sweep node with |", func() error { _, err := s.SweepNode(ctx, "x|y"); return err }},
		{"node uids empty node", func() error { _, err := s.NodeUIDs(ctx, ""); return err }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want ErrInvalid", err)
			}
		})
	}
	if n := rec.roundTrips(); n != 0 {
		t.Errorf("invalid calls reached Redis (%d round trips)", n)
	}
}

func TestRedisDown(t *testing.T) {
	// A server of its own: stopping the shared one would disturb the other tests.
	r := testenv.NewRedis(t)
	// Without command retries each failing call returns after one dial attempt series, not several.
	s, _, _ := newStoreWith(t, &redis.Options{Addr: r.Addr, MaxRetries: -1})
	route := rt("hank", "c", "n1", "phone", t0)
	register(t, s, route)

	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	ops := []struct {
		prefix string
		call   func(ctx context.Context) error
	}{
		{"ping redis: ", s.Ping},
		{"register route: ", func(ctx context.Context) error { _, err := s.Register(ctx, route); return err }},
		{"register routes: ", func(ctx context.Context) error { return s.RegisterAll(ctx, []Route{route}) }},
		{"lookup routes: ", func(ctx context.Context) error { _, err := s.Lookup(ctx, []string{"hank"}); return err }},
		{"unregister route: ", func(ctx context.Context) error { _, err := s.Unregister(ctx, route); return err }},
		{"remove stale routes: ", func(ctx context.Context) error {
			_, err := s.RemoveStale(ctx, "hank", "n1", []string{"c"})
			return err
		}},
		{"sweep node: ", func(ctx context.Context) error { _, err := s.SweepNode(ctx, "n1"); return err }},
		{"list node uids: ", func(ctx context.Context) error { _, err := s.NodeUIDs(ctx, "n1"); return err }},
	}
	for _, op := range ops {
		t.Run(strings.TrimSuffix(op.prefix, ": "), func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := op.call(ctx)
			if err == nil {
				t.Fatal("no error while Redis is down")
			}
			if !strings.HasPrefix(err.Error(), op.prefix) || errors.Is(err, ErrInvalid) {
				t.Errorf("err = %v, want a Redis error prefixed %q", err, op.prefix)
			}
		})
	}

	if err := r.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	// go-redis stops dialing after repeated failures and probes the server once a second until it
	// answers, so the client needs a moment to notice the restart.
	deadline := time.Now().Add(10 * time.Second)
	for err := s.Ping(context.Background()); err != nil; err = s.Ping(context.Background()) {
		if time.Now().After(deadline) {
			t.Fatalf("still down 10 s after the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The restarted server is empty and has no scripts cached: the node records its routes again.
	register(t, s, route)
	if d := diffRoutes(lookup(t, s, "hank"), map[string][]Route{"hank": {route}}); d != "" {
		t.Error(d)
	}
}

// keySlot is Redis Cluster's slot of key.
func keySlot(key string) int { return testenv.KeySlot(key) }

func TestKeySlot(t *testing.T) {
	if keySlot(routeKey("x")) != keySlot(legacyNodeUIDsKey("x")) || keySlot(routeKey("x")) != keySlot("x") || keySlot(nodeUIDsKey("x", 3)) != keySlot("x:3") {
		t.Error("the uid or node id is not the hash tag of its keys")
	}
}

// TestCommandsTouchOneSlot runs every operation and checks what reached Redis: each script call names
// its keys in KEYS, all in one hash slot, and every other command touches one key.
func TestCommandsTouchOneSlot(t *testing.T) {
	s, rdb, rec := newStore(t)
	ctx := context.Background()
	if err := rdb.ScriptFlush(ctx).Err(); err != nil { // so the EVAL fallback is checked too
		t.Fatal(err)
	}
	register(t, s, rt("ivy", "c1", "n1", "p", t0), rt("ivy", "c2", "n2", "p", t0))
	if err := s.RegisterAll(ctx, []Route{rt("jo", "c1", "n1", "p", t0), rt("kim", "c1", "n2", "p", t0)}); err != nil {
		t.Fatal(err)
	}
	lookup(t, s, "ivy", "jo", "kim", "nobody")
	if _, err := s.Unregister(ctx, rt("ivy", "c1", "n1", "p", t0)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.RemoveStale(ctx, "kim", "n2", []string{"c1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.NodeUIDs(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SweepNode(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkPending(ctx, []string{"kim"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if seen, err := s.PendingMark(ctx, "kim"); err != nil {
		t.Fatal(err)
	} else if _, err := s.ClearPending(ctx, "kim", seen); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkSynced(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Synced(ctx, "n1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.LookupFrom(ctx, []string{"kim"}, []string{"n1", "n2"}); err != nil {
		t.Fatal(err)
	}

	// EVALSHA names a script by digest, EVAL (the fallback after SCRIPT FLUSH) by its source.
	scripts := map[string]string{}
	for name, sc := range map[string]*redis.Script{
		"register": registerScript, "unregister": unregisterScript, "sweep": sweepScript,
		"count": countScript, "mark_pending": markScript, "clear_pending": clearScript,
		"mark_synced": markSynced,
	} {
		src, err := lua.FS.ReadFile(name + ".lua")
		if err != nil {
			t.Fatal(err)
		}
		scripts[sc.Hash()] = name
		scripts[string(src)] = name
	}
	seen := map[string]bool{}
	for _, args := range rec.sent() {
		name := strings.ToLower(fmt.Sprint(args[0]))
		var keys []string
		switch name {
		case "evalsha", "eval":
			seen[name] = true
			script, ok := scripts[fmt.Sprint(args[1])]
			if !ok {
				t.Errorf("unknown script in %v", args[:3])
				continue
			}
			seen[script] = true
			n, _ := args[2].(int)
			if n < 1 || len(args) < 3+n {
				t.Errorf("%s called with %v keys", script, args[2])
				continue
			}
			for _, k := range args[3 : 3+n] {
				keys = append(keys, fmt.Sprint(k))
			}
		case "sadd", "srem", "sscan", "del", "get", "hgetall", "exists":
			keys = []string{fmt.Sprint(args[1])}
		case "hello", "client", "ping", "scan":
			continue
		default:
			t.Errorf("unexpected command %v", args)
			continue
		}
		for _, k := range keys {
			if !strings.HasPrefix(k, keyPrefix) || !strings.Contains(k, "{") {
				t.Errorf("%s: key %q lacks the prefix or a hash tag", name, k)
			}
			if keySlot(k) != keySlot(keys[0]) {
				t.Errorf("%s: keys %v span slots", name, keys)
			}
		}
	}
	for _, name := range append(slices.Collect(maps.Values(scripts)), "eval", "evalsha") {
		if !seen[name] {
			t.Errorf("%s never ran", name)
		}
	}
}

// TestScriptHeaders holds the scripts to the lua/ rules: a header naming every KEYS[i] and ARGV[i]
// the script uses and what it returns, and no key built inside a script.
func TestScriptHeaders(t *testing.T) {
	names, err := fs.Glob(lua.FS, "*.lua")
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"clear_pending.lua", "count.lua", "mark_pending.lua", "mark_synced.lua", "register.lua", "room_history_add.lua", "room_history_since.lua", "room_set.lua", "sweep.lua", "unregister.lua"}
	if !slices.Equal(names, want) {
		t.Errorf("scripts %v, want %v", names, want)
	}
	used := regexp.MustCompile(`(KEYS|ARGV)\[(\d+)\]`)
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			src, err := fs.ReadFile(lua.FS, name)
			if err != nil {
				t.Fatal(err)
			}
			var header, body []string
			for line := range strings.Lines(string(src)) {
				if len(body) == 0 && strings.HasPrefix(line, "--") {
					header = append(header, line)
				} else {
					body = append(body, line)
				}
			}
			h, b := strings.Join(header, ""), strings.Join(body, "")
			if !strings.HasPrefix(h, "-- "+strings.TrimSuffix(name, ".lua")+" ") {
				t.Error("header does not start with the script's name")
			}
			if !strings.Contains(h, "Returns") {
				t.Error("header does not say what the script returns")
			}
			for _, m := range used.FindAllString(b, -1) {
				if !strings.Contains(h, m) && !strings.Contains(h, strings.TrimSuffix(m, "]")+"..") {
					t.Errorf("%s used but not described in the header", m)
				}
			}
			if strings.Contains(b, "herald:") || strings.Contains(b, "..'{'") || strings.Contains(b, `"{"`) {
				t.Error("the script seems to build a key itself")
			}
		})
	}
}

func BenchmarkLookup100(b *testing.B) {
	s, _, _ := newStore(b)
	ctx := context.Background()
	var rs []Route
	uids := make([]string, 100)
	for i := range uids {
		uids[i] = fmt.Sprintf("bench-%d", i)
		rs = append(rs,
			rt(uids[i], "c1", "node-a", "phone", t0),
			rt(uids[i], "c2", "node-b", "web", t0))
	}
	if err := s.RegisterAll(ctx, rs); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		got, err := s.Lookup(ctx, uids)
		if err != nil || len(got) != len(uids) {
			b.Fatalf("lookup: %d uids, %v", len(got), err)
		}
	}
}
