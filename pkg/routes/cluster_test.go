package routes

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/testenv"
	"github.com/redis/go-redis/v9"
)

// clusterStore returns a Store over a cluster client of rc, configured as the services configure it.
func clusterStore(t *testing.T, rc *testenv.RedisCluster) *Store {
	t.Helper()
	rdb, err := NewClient(ClientOptions{Addrs: rc.Addrs(), Cluster: true, Tune: func(o *redis.UniversalOptions) {
		o.DialTimeout, o.ReadTimeout, o.WriteTimeout = time.Second, time.Second, time.Second
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return NewStore(rdb)
}

// uidOn finds a uid (from prefix-0 on) for which want holds.
func uidOn(t *testing.T, prefix string, want func(uid string) bool) string {
	t.Helper()
	for i := range 100000 {
		if uid := fmt.Sprintf("%s-%d", prefix, i); want(uid) {
			return uid
		}
	}
	t.Fatal("no uid found")
	return ""
}

// TestCluster runs the directory on a real Redis Cluster of three masters without replicas: every
// operation works across slots, a node's index spreads over the masters, a dead master costs only the
// uids of its slots, and a route whose index entry cannot be written does not stay behind.
func TestCluster(t *testing.T) {
	rc := testenv.NewRedisCluster(t, 3, 0)
	s := clusterStore(t, rc)
	ctx := context.Background()
	if err := s.CheckMode(ctx); err != nil {
		t.Fatalf("CheckMode on a cluster with a cluster client: %v", err)
	}

	var rs []Route
	var uids []string
	for i := range 300 {
		uid := fmt.Sprintf("c-%d", i)
		uids = append(uids, uid)
		rs = append(rs, rt(uid, "c1", "ps-1", "web", t0))
	}
	if err := s.RegisterAll(ctx, rs); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Register(ctx, rt("c-0", "c2", "ps-2", "phone", t0)); err != nil {
		t.Fatal(err)
	}
	if err := s.MarkSynced(ctx, "ps-1"); err != nil {
		t.Fatal(err)
	}
	res, err := s.LookupFrom(ctx, uids, []string{"ps-1", "ps-2"})
	if err != nil || len(res.Routes) != 300 || len(res.Routes["c-0"]) != 2 || len(res.Failed) != 0 || !slices.Equal(res.Unsynced, []string{"ps-2"}) {
		t.Fatalf("lookup on the cluster: %d uids found, c-0 %v, failed %v, unsynced %v, err %v", len(res.Routes), res.Routes["c-0"], res.Failed, res.Unsynced, err)
	}
	got, err := s.NodeUIDs(ctx, "ps-1")
	if slices.Sort(got); err != nil || !slices.Equal(got, slices.Sorted(slices.Values(uids))) {
		t.Fatalf("NodeUIDs: %d uids, err %v; want 300", len(got), err)
	}
	// The index spreads: its shards live on every master.
	holders := map[string]bool{}
	for k := range nodeIndexShards {
		m, err := rc.MasterOf(ctx, nodeUIDsKey("ps-1", k))
		if err != nil {
			t.Fatal(err)
		}
		holders[m.Addr] = true
	}
	if len(holders) != 3 {
		t.Errorf("ps-1's index shards live on %d masters, want all 3", len(holders))
	}

	// A dead node is swept completely, whichever masters its index shards live on.
	var ps2 []Route
	for _, uid := range uids[:50] {
		ps2 = append(ps2, rt(uid, "c9", "ps-2", "web", t0))
	}
	if err := s.RegisterAll(ctx, ps2); err != nil {
		t.Fatal(err)
	}
	if n, err := s.SweepNode(ctx, "ps-2"); err != nil || n != 51 {
		t.Fatalf("SweepNode(ps-2) = %d, %v; want 51 (50 routes and c-0's c2)", n, err)
	}
	if left, err := s.NodeUIDs(ctx, "ps-2"); err != nil || len(left) != 0 {
		t.Fatalf("ps-2's index after the sweep: %v, %v", left, err)
	}
	if got := lookup(t, s, uids...); len(got) != 300 || len(got["c-0"]) != 1 || got["c-0"][0].Node != "ps-1" {
		t.Fatalf("after sweeping ps-2: %d uids with routes, c-0 %v; want ps-1's routes untouched", len(got), got["c-0"])
	}

	// One master down: its uids fail, the others are still read.
	victim, err := rc.MasterOf(ctx, routeKey("c-0"))
	if err != nil {
		t.Fatal(err)
	}
	onVictim := func(uid string) bool { m, err := rc.MasterOf(ctx, routeKey(uid)); return err == nil && m == victim }
	var wantFailed []string
	for _, uid := range uids {
		if onVictim(uid) {
			wantFailed = append(wantFailed, uid)
		}
	}
	// A uid whose route lives on a healthy master but whose index shard is on the victim, to check
	// that a failed registration leaves no route behind.
	phantom := uidOn(t, "phantom", func(uid string) bool {
		m, err := rc.MasterOf(ctx, indexKeyOf("ps-1", uid))
		return err == nil && m == victim && !onVictim(uid)
	})
	if err := victim.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { victim.Restart(context.Background()) })

	res, err = s.LookupFrom(ctx, uids, []string{"ps-1"})
	if err != nil {
		t.Fatalf("lookup with one master down failed as a whole: %v", err)
	}
	slices.Sort(wantFailed)
	if slices.Sort(res.Failed); !slices.Equal(res.Failed, wantFailed) || res.Err == nil {
		t.Errorf("failed uids: %d (err %v), want the %d of the stopped master", len(res.Failed), res.Err, len(wantFailed))
	}
	if len(res.Routes) != 300-len(wantFailed) {
		t.Errorf("%d uids read with one master down, want %d", len(res.Routes), 300-len(wantFailed))
	}
	if _, err := s.Lookup(ctx, uids); err == nil {
		t.Error("Lookup (all or nothing) succeeded with one master down")
	}
	if _, err := s.LookupFrom(ctx, wantFailed[:1], nil); err == nil {
		t.Error("a lookup none of whose uids could be read succeeded")
	}

	servers := s.ServersOf(ctx, rt(phantom, "x", "ps-1", "web", t0))
	if !slices.Contains(servers, victim.Addr) || len(servers) != 2 {
		t.Errorf("ServersOf(%s) = %v, want its route's master and the stopped one", phantom, servers)
	}
	if _, err := s.Register(ctx, rt(phantom, "x", "ps-1", "web", t0)); err == nil {
		t.Fatal("Register succeeded with its index shard's master down")
	}
	found, err := s.LookupFrom(ctx, []string{phantom}, nil)
	if err != nil || len(found.Routes[phantom]) != 0 {
		t.Fatalf("a refused registration left its route: %v, err %v", found.Routes[phantom], err)
	}
	down := 0
	for addr, err := range s.Servers(ctx) {
		if err != nil {
			down++
			if addr != victim.Addr {
				t.Errorf("server %s failing, want only %s", addr, victim.Addr)
			}
		}
	}
	if down != 1 {
		t.Errorf("%d servers failing, want the stopped master", down)
	}
	if err := s.Ping(ctx); err != nil {
		t.Errorf("Ping with two of three masters up: %v (a service stays ready)", err)
	}
}

// TestClusterMisconfigured refuses a client of the wrong mode with ErrMisconfigured, and several
// addresses without cluster mode before any connection.
func TestClusterMisconfigured(t *testing.T) {
	rc := testenv.NewRedisCluster(t, 3, 0)
	ctx := context.Background()

	plain, err := NewClient(ClientOptions{Addrs: rc.Addrs()[:1]})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if err := NewStore(plain).CheckMode(ctx); !errors.Is(err, ErrMisconfigured) {
		t.Errorf("one address of a cluster without cluster mode: %v, want ErrMisconfigured", err)
	}
	if err := NewStore(plain).Ping(ctx); !errors.Is(err, ErrMisconfigured) {
		t.Errorf("readiness on one address of a cluster: %v, want ErrMisconfigured", err)
	}

	cluster, err := NewClient(ClientOptions{Addrs: []string{srv.Addr}, Cluster: true})
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	if err := NewStore(cluster).CheckMode(ctx); !errors.Is(err, ErrMisconfigured) {
		t.Errorf("cluster mode on a plain server: %v, want ErrMisconfigured", err)
	}

	if _, err := NewClient(ClientOptions{Addrs: rc.Addrs()}); err == nil {
		t.Error("several addresses without cluster mode were accepted")
	}
	if _, err := NewClient(ClientOptions{Addrs: []string{srv.Addr, ""}, Cluster: true}); err == nil {
		t.Error("an empty address was accepted")
	}
}

// TestClusterFailover kills a master of a cluster with replicas while lookups run: uids of the other
// masters never fail, and the dead master's uids are read again once its replica is promoted, without
// waiting for a periodic reload of the slot layout.
func TestClusterFailover(t *testing.T) {
	rc := testenv.NewRedisCluster(t, 3, 1)
	s := clusterStore(t, rc)
	ctx := context.Background()
	var rs []Route
	var uids []string
	for i := range 200 {
		uid := fmt.Sprintf("f-%d", i)
		uids = append(uids, uid)
		rs = append(rs, rt(uid, "c1", "ps-1", "web", t0))
	}
	if err := s.RegisterAll(ctx, rs); err != nil {
		t.Fatal(err)
	}
	victim, err := rc.MasterOf(ctx, routeKey("f-0"))
	if err != nil {
		t.Fatal(err)
	}
	onVictim := map[string]bool{}
	for _, uid := range uids {
		if m, err := rc.MasterOf(ctx, routeKey(uid)); err == nil && m == victim {
			onVictim[uid] = true
		}
	}
	// Replicas acknowledge what they have: wait for them, so the promoted one holds every route. A
	// healthy cluster only says the replica's link is up; replication is asynchronous, so the
	// victim's own WAIT is what says its replica holds every write.
	if err := rc.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	direct := redis.NewClient(&redis.Options{Addr: victim.Addr})
	acked, err := direct.Do(ctx, "WAIT", 1, 10000).Int()
	direct.Close()
	if err != nil || acked < 1 {
		t.Fatalf("the victim's replica did not acknowledge its writes: %d replicas, %v", acked, err)
	}
	if err := victim.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { victim.Restart(context.Background()) })

	stopped := time.Now()
	deadline := stopped.Add(60 * time.Second)
	sawFailure := false
	for {
		res, err := s.LookupFrom(ctx, uids, nil)
		if err != nil {
			t.Fatalf("lookup failed as a whole during the failover: %v", err)
		}
		for _, uid := range res.Failed {
			if !onVictim[uid] {
				t.Fatalf("uid %s of a healthy master failed during the failover", uid)
			}
		}
		sawFailure = sawFailure || len(res.Failed) > 0
		if len(res.Failed) == 0 && len(res.Routes) == len(uids) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d uids still failing 60 s after their master was stopped (replica not promoted, or the client kept the old layout)", len(res.Failed))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("the stopped master's uids were read again %v after it stopped (saw failures: %v)", time.Since(stopped).Round(10*time.Millisecond), sawFailure)
	for uid, r := range lookup(t, s, uids...) {
		if len(r) != 1 || r[0].Node != "ps-1" {
			t.Fatalf("after the failover %s has %v", uid, r)
		}
	}
}
