package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldpush/herald/pkg/routes"
	"github.com/heraldpush/herald/pkg/testenv"
)

// TestRedisClusterMasterDown runs a node on a real Redis Cluster of three masters (no replicas) and
// stops one: connects whose route would be written to it are refused, every other connect is taken,
// and once the master is back (empty, as a restarted master without persistence is) the node records
// the routes it lost again.
func TestRedisClusterMasterDown(t *testing.T) {
	rc := testenv.NewRedisCluster(t, 3, 0)
	const id = "ps-rc"
	n := startNode(t, id, nodeOpts{env: map[string]string{
		"HERALD_REDIS_ADDR":    strings.Join(rc.Addrs(), ","),
		"HERALD_REDIS_CLUSTER": "true",
	}})
	rdb, err := routes.NewClient(routes.ClientOptions{Addrs: rc.Addrs(), Cluster: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	store := routes.NewStore(rdb)
	ctx := context.Background()

	victim, err := rc.MasterOf(ctx, "herald:route:{early}")
	if err != nil {
		t.Fatal(err)
	}
	servers := func(uid string) []string { return store.ServersOf(ctx, routes.Route{UID: uid, Node: id}) }
	pick := func(prefix string, want func([]string) bool) string {
		for i := range 10000 {
			if uid := fmt.Sprintf("%s-%d", prefix, i); want(servers(uid)) {
				return uid
			}
		}
		t.Fatalf("no uid for %s", prefix)
		return ""
	}
	onVictim := pick("doomed", func(s []string) bool { return s[0] == victim.Addr })
	healthy := pick("healthy", func(s []string) bool { return !slices.Contains(s, victim.Addr) })

	early := dial(t, n, "early", "phone") // its route lives on the victim
	if err := victim.Stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "connects to the stopped master refused", func() error {
		if status := dialStatus(t, n, onVictim); status != 503 {
			return fmt.Errorf("dial answered %d, want 503", status)
		}
		return nil
	})
	for range 5 {
		if status := dialStatus(t, n, healthy); status != 101 {
			t.Fatalf("a connect whose route goes to healthy masters answered %d with one master down", status)
		}
	}
	if got, err := store.Lookup(ctx, []string{healthy}); err != nil || len(got[healthy]) == 0 {
		t.Fatalf("routes of %s: %v, %v", healthy, got, err)
	}

	if err := victim.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the lost route recorded again", func() error {
		got, err := store.Lookup(ctx, []string{"early"})
		if err != nil {
			return err
		}
		if rs := got["early"]; len(rs) != 1 || rs[0].ConnID != early.welcome.ConnID {
			return fmt.Errorf("early's routes %v", rs)
		}
		return nil
	})
	eventually(t, "connects to the restarted master taken", func() error {
		if status := dialStatus(t, n, onVictim); status != 101 {
			return fmt.Errorf("dial answered %d", status)
		}
		return nil
	})
}

// dialStatus connects as uid and tells how it went: 101 when welcomed, the HTTP status of a refused
// upgrade, or the close code of a connection closed before its welcome.
func dialStatus(t *testing.T, n *node, uid string) int {
	t.Helper()
	conn, br, _, err := ws.Dialer{}.Dial(context.Background(), n.wsURL+"?token="+tokenFor(t, uid, "d"))
	var se ws.StatusError
	if errors.As(err, &se) {
		return int(se)
	}
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { conn.Close() })
	if br != nil {
		conn = bufferedConn{Conn: conn, r: br}
	}
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	h, err := ws.ReadHeader(conn)
	if err != nil {
		t.Fatalf("read the first frame: %v", err)
	}
	if h.OpCode == ws.OpClose {
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(conn, payload); err != nil {
			t.Fatalf("read the close frame: %v", err)
		}
		code, _ := ws.ParseCloseFrameData(payload)
		return int(code)
	}
	return 101
}
