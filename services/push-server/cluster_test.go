package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/gobwas/ws"

	"github.com/heraldpush/herald/pkg/apiclient"
	"github.com/heraldpush/herald/pkg/apikey"
	"github.com/heraldpush/herald/pkg/client"
	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/mysqldb"
	"github.com/heraldpush/herald/pkg/testenv"
	"github.com/heraldpush/herald/pkg/token"
	"github.com/heraldpush/herald/pkg/wire"
)

func TestTwoNodesRecordTheirOwnRoutes(t *testing.T) {
	a := startNode(t, "ps-two-a", nodeOpts{})
	b := startNode(t, "ps-two-b", nodeOpts{})
	ca := dial(t, a, "roamer", "phone")
	cb := dial(t, b, "roamer", "laptop")
	rs := lookup(t, sharedRedis, "roamer")
	sort.Slice(rs, func(i, j int) bool { return rs[i].Node < rs[j].Node })
	if len(rs) != 2 || rs[0].Node != "ps-two-a" || rs[0].ConnID != ca.welcome.ConnID || rs[1].Node != "ps-two-b" || rs[1].ConnID != cb.welcome.ConnID {
		t.Fatalf("routes %+v", rs)
	}
	// Each node delivers only to its own connection and names only its own conn ids.
	ra := deliver(t, a, "m-a", `1`, "roamer")
	if ra.Results[0].Delivered != 1 || len(ra.Results[0].ConnIDs) != 1 || ra.Results[0].ConnIDs[0] != ca.welcome.ConnID {
		t.Fatalf("node a result %+v", ra.Results[0])
	}
	ca.nextOfType("push")

	ca.conn.Close()
	eventually(t, "only b's route left", func() error {
		rs := lookup(t, sharedRedis, "roamer")
		if len(rs) != 1 || rs[0].Node != "ps-two-b" {
			return fmt.Errorf("routes %+v", rs)
		}
		return nil
	})
}

func TestInternalAPI(t *testing.T) {
	n := startNode(t, "ps-internal", nodeOpts{})
	c1 := dial(t, n, "kicked", "a")
	c2 := dial(t, n, "kicked", "b")
	other := dial(t, n, "stays", "a")

	t.Run("secret required", func(t *testing.T) {
		for _, path := range []string{wire.PathStats, wire.PathDeliver} {
			req, _ := http.NewRequest(http.MethodGet, n.internalURL+path, nil)
			if path == wire.PathDeliver {
				req.Method = http.MethodPost
			}
			req.Header.Set(wire.SecretHeader, "wrong")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != 401 {
				t.Fatalf("%s with a wrong secret: %d", path, resp.StatusCode)
			}
		}
	})
	t.Run("stats", func(t *testing.T) {
		var st wire.Stats
		req, _ := http.NewRequest(http.MethodGet, n.internalURL+wire.PathStats, nil)
		req.Header.Set(wire.SecretHeader, secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		decodeJSON(t, resp.Body, &st)
		if st.Node != "ps-internal" || st.Connections != 3 || st.Users != 2 || st.RSSBytes == 0 {
			t.Fatalf("stats %+v", st)
		}
	})
	t.Run("bad deliver requests", func(t *testing.T) {
		for _, body := range []any{
			map[string]any{"message": map[string]any{"id": "", "data": 1}, "uids": []string{"x"}},
			map[string]any{"message": map[string]any{"id": "x"}, "uids": []string{"x"}},
			"not an object",
		} {
			if status := internalCall(t, n, wire.PathDeliver, body, nil); status != 400 {
				t.Fatalf("deliver %v: %d, want 400", body, status)
			}
		}
	})
	t.Run("broadcast", func(t *testing.T) {
		var resp wire.BroadcastResponse
		req := wire.BroadcastRequest{Message: wire.Message{ID: "all-1", Data: []byte(`"hi all"`), TS: 1}}
		if status := internalCall(t, n, wire.PathBroadcast, req, &resp); status != 200 || resp.Delivered != 3 {
			t.Fatalf("broadcast: %d %+v", status, resp)
		}
		for _, c := range []*wsClient{c1, c2, other} {
			if p := c.nextOfType("push"); p["id"] != "all-1" {
				t.Fatalf("push %v", p)
			}
		}
	})
	t.Run("deliver batch", func(t *testing.T) {
		api := apiclient.NewNodeClient(http.DefaultClient, secret)
		defer api.Close()
		// The stream form twice: the second batch goes on the stream the first one opened.
		for i, form := range []apiclient.BatchForm{apiclient.BatchJSON, apiclient.BatchBinary, apiclient.BatchStream, apiclient.BatchStream} {
			msg := func(id string) wire.Message {
				return wire.Message{ID: fmt.Sprintf("%s-%d-%v", id, i, form), Data: []byte(`{"n":1}`), TS: 1}
			}
			answers, err := api.DeliverBatch(context.Background(), n.internalURL, form, []wire.DeliverItem{
				{Message: msg("batch-1"), UIDs: []string{"kicked", "nobody"}, TraceID: "t1"},
				{Message: wire.Message{ID: "", Data: []byte(`1`)}, UIDs: []string{"stays"}},
				{Message: msg("batch-2"), UIDs: []string{"stays"}},
			})
			if err != nil {
				t.Fatalf("deliver batch (%v): %v", form, err)
			}
			first := answers[0]
			if first.Error != nil || len(first.Results) != 2 || first.Results[0].Delivered != 2 || len(first.Results[0].ConnIDs) != 2 ||
				first.Results[1].Delivered != 0 || len(first.Results[1].ConnIDs) != 0 {
				t.Fatalf("first item %+v, want 2 connections of kicked written and none of nobody", first)
			}
			if e := answers[1].Error; e == nil || e.Code != "invalid_request" || len(answers[1].Results) != 0 {
				t.Fatalf("malformed item answered %+v, want an error and no results", answers[1])
			}
			if r := answers[2]; r.Error != nil || len(r.Results) != 1 || r.Results[0].Delivered != 1 {
				t.Fatalf("third item %+v: the malformed one before it must not stop it", r)
			}
			for _, c := range []*wsClient{c1, c2} {
				if p := c.nextOfType("push"); p["id"] != msg("batch-1").ID {
					t.Fatalf("push %v, want %s", p, msg("batch-1").ID)
				}
			}
			if p := other.nextOfType("push"); p["id"] != msg("batch-2").ID {
				t.Fatalf("push %v, want %s", p, msg("batch-2").ID)
			}
		}
		if status := internalCall(t, n, wire.PathDeliverBatch, "not an object", nil); status != 400 {
			t.Fatalf("malformed batch: HTTP %d, want 400", status)
		}
		req, _ := http.NewRequest(http.MethodPost, n.internalURL+wire.PathDeliverBatch, strings.NewReader("\x0a\x7fshort"))
		req.Header.Set(wire.SecretHeader, secret)
		req.Header.Set("Content-Type", wire.ContentTypeProtobuf)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e wire.ErrorBody
		if err := json.NewDecoder(resp.Body).Decode(&e); resp.StatusCode != 400 || err != nil || e.Error.Code != "invalid_request" {
			t.Fatalf("malformed binary batch: HTTP %d, %+v (%v), want 400 invalid_request in JSON", resp.StatusCode, e, err)
		}
	})
	t.Run("kick", func(t *testing.T) {
		var resp wire.KickResponse
		if status := internalCall(t, n, wire.PathKick, wire.KickRequest{UID: "kicked"}, &resp); status != 200 || resp.Closed != 2 {
			t.Fatalf("kick: %d %+v", status, resp)
		}
		for _, c := range []*wsClient{c1, c2} {
			if code, _ := c.closed(); code != wire.ClosePolicy {
				t.Fatalf("kicked connection closed with %d", code)
			}
		}
		other.send(`{"type":"ping"}`)
		other.nextOfType("pong")
		eventually(t, "kicked user's routes removed", func() error {
			if rs := lookup(t, sharedRedis, "kicked"); len(rs) != 0 {
				return fmt.Errorf("routes %+v", rs)
			}
			return nil
		})
		if status := internalCall(t, n, wire.PathKick, wire.KickRequest{UID: "bad|uid"}, nil); status != 400 {
			t.Fatalf("kick with a bad uid: %d", status)
		}
	})
}

func TestRedisOutage(t *testing.T) {
	r := testenv.NewRedis(t)
	n := startNode(t, "ps-redis-out", nodeOpts{redis: r})
	before := dial(t, n, "steady", "d")

	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "readyz names redis", func() error {
		resp, err := http.Get(n.internalURL + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 503 || !strings.Contains(string(b), "redis:") {
			return fmt.Errorf("%d %s", resp.StatusCode, b)
		}
		return nil
	})
	eventually(t, "new upgrades refused with 503", func() error {
		if status := upgradeStatus(t, n.wsURL+"?token="+tokenFor(t, "newcomer", "d")); status != 503 {
			return fmt.Errorf("status %d", status)
		}
		return nil
	})
	// The existing connection is untouched.
	before.send(`{"type":"ping"}`)
	before.nextOfType("pong")
	deliver(t, n, "during-outage", `1`, "steady")
	before.nextOfType("push")

	// Redis comes back empty (no persistence): the node records its routes again.
	if err := r.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "route re-recorded", func() error {
		if rs := lookup(t, r, "steady"); len(rs) != 1 || rs[0].ConnID != before.welcome.ConnID {
			return fmt.Errorf("routes %+v", rs)
		}
		return nil
	})
	eventually(t, "upgrades accepted again", func() error {
		if status := upgradeStatus(t, n.wsURL+"?token="+tokenFor(t, "newcomer", "d")); status != 101 {
			return fmt.Errorf("status %d", status)
		}
		return nil
	})
}

// TestKillNineRemovesZnode runs a push-server as its own process and kills it: its ephemeral znode
// must vanish within the session timeout, with nobody deregistering it.
func TestKillNineRemovesZnode(t *testing.T) {
	env, _, internal := nodeEnv(t, "ps-killed", nodeOpts{})
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "HERALD_TEST_AS_PUSH_SERVER=1")
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()

	conn, _, err := zk.Connect([]string{sharedZK.Addr}, 5*time.Second, zk.WithLogger(zkQuiet{}))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	path := discovery.Root + "/ps-killed"
	eventually(t, "znode registered", func() error {
		if ok, _, err := conn.Exists(path); err != nil || !ok {
			return fmt.Errorf("exists %v %v", ok, err)
		}
		return nil
	})
	eventually(t, "internal API up", func() error {
		resp, err := http.Get("http://" + internal + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	killed := time.Now()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for {
		ok, _, err := conn.Exists(path)
		if err == nil && !ok {
			break
		}
		// Session timeout 2 s; the server may take up to one more tick to expire it.
		if time.Since(killed) > 6*time.Second {
			t.Fatalf("znode still there %v after kill -9", time.Since(killed))
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("znode gone %v after kill -9", time.Since(killed).Round(100*time.Millisecond))
}

type zkQuiet struct{}

func (zkQuiet) Printf(string, ...any) {}

// TestDrainMovesClientsToTheOtherNode runs the real auth service and two nodes: draining one sends
// every client there a reconnect frame and close 1012, and the Go client logs in again and lands on
// the other node.
func TestDrainMovesClientsToTheOtherNode(t *testing.T) {
	zkServer := testenv.NewZooKeeper(t)
	mysql := testenv.NewMySQL(t)
	authURL, apiKey := startAuth(t, mysql, zkServer)

	a := startNode(t, "ps-drain-a", nodeOpts{zk: zkServer, env: map[string]string{"HERALD_DRAIN_BATCH": "2", "HERALD_DRAIN_INTERVAL": "50ms"}})
	b := startNode(t, "ps-drain-b", nodeOpts{zk: zkServer})

	// auth learns the nodes from its ZooKeeper watch, a moment after they registered.
	eventually(t, "auth sees both nodes", func() error {
		for i := range 50 {
			if s, err := client.MintToken(t.Context(), authURL, apiKey, fmt.Sprint("probe-", i), "d"); err != nil {
				return err
			} else if s.ServerID == b.id {
				return nil
			}
		}
		return fmt.Errorf("auth never picked %s", b.id)
	})
	// Find uids auth sends to node a.
	var uids []string
	for i := 0; len(uids) < 5; i++ {
		uid := fmt.Sprint("drainee-", i)
		s, err := client.MintToken(t.Context(), authURL, apiKey, uid, "d")
		if err != nil {
			t.Fatal(err)
		}
		if s.ServerID == a.id {
			uids = append(uids, uid)
		}
		if i > 200 {
			t.Fatal("auth never picked node a")
		}
	}
	// Bare clients see the frames; Go clients show the move.
	var bare []*wsClient
	for _, uid := range uids[:3] {
		bare = append(bare, dial(t, a, uid, "bare"))
	}
	type moved struct {
		uid   string
		nodes []string
	}
	results := make(chan moved, 2)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	for _, uid := range uids[3:] {
		c := client.New(client.Config{AuthURL: authURL, APIKey: apiKey, UID: uid, Device: "go", MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Logger: discard})
		wg.Go(func() { c.Run(ctx) })
		wg.Go(func() {
			var nodes []string
			for w := range c.Connected() {
				nodes = append(nodes, w.Node)
				if len(nodes) == 2 {
					results <- moved{uid, nodes}
					return
				}
			}
		})
	}
	// Wait until the Go clients are on a.
	eventually(t, "go clients on node a", func() error {
		resp := deliver(t, a, "probe", `0`, uids[3:]...)
		for _, r := range resp.Results {
			if r.Delivered == 0 {
				return fmt.Errorf("%s not connected yet", r.UID)
			}
		}
		return nil
	})

	if status := internalCall(t, a, wire.PathDrain, struct{}{}, nil); status != http.StatusAccepted {
		t.Fatalf("drain: %d", status)
	}
	for _, c := range bare {
		if m := c.nextOfType(wire.TypeReconnect); m["reason"] == "" {
			t.Fatalf("reconnect frame %v", m)
		}
		if code, _ := c.closed(); code != wire.CloseServiceRestart {
			t.Fatalf("drained connection closed with %d, want 1012", code)
		}
	}
	for range uids[3:] {
		select {
		case m := <-results:
			if m.nodes[0] != a.id || m.nodes[1] != b.id {
				t.Fatalf("%s went %v, want %s then %s", m.uid, m.nodes, a.id, b.id)
			}
		case <-time.After(20 * time.Second):
			t.Fatal("a Go client did not land on the other node")
		}
	}
	// The drained node stays up, refusing connections, with none of the routes left.
	eventually(t, "the drained node's routes gone", func() error {
		for _, uid := range uids {
			for _, r := range lookup(t, sharedRedis, uid) {
				if r.Node == a.id {
					return fmt.Errorf("route of the drained node left: %+v", r)
				}
			}
		}
		return nil
	})
	if _, status := tryDial(t, a.wsURL+"?token="+tokenFor(t, "after-drain", "d")); status != 503 {
		t.Fatalf("a drained node answered a connect with %d, want 503", status)
	}

	// Undrained, it takes connections again and is back in ZooKeeper without the draining flag.
	if status := internalCall(t, a, wire.PathUndrain, struct{}{}, nil); status != http.StatusOK {
		t.Fatalf("undrain: %d", status)
	}
	if status := internalCall(t, a, wire.PathUndrain, struct{}{}, nil); status != http.StatusConflict {
		t.Fatalf("undrain of a live node: %d, want 409", status)
	}
	dial(t, a, "after-undrain", "d")
	zkConn, _, err := zk.Connect([]string{zkServer.Addr}, 5*time.Second, zk.WithLogger(zkQuiet{}))
	if err != nil {
		t.Fatal(err)
	}
	defer zkConn.Close()
	eventually(t, "the undrained node live in zookeeper", func() error {
		b, _, err := zkConn.Get(discovery.Root + "/" + a.id)
		if err != nil {
			return err
		}
		var n discovery.Node
		// The entry also tells push-route that the node reads deliver-batch in binary.
		if err := json.Unmarshal(b, &n); err != nil || n.Draining || !slices.Contains(n.Encodings, wire.ContentTypeProtobuf) {
			return fmt.Errorf("znode %s (%v)", b, err)
		}
		return nil
	})
}

// startAuth builds and runs the real auth service and returns its URL and a fresh API key.
func startAuth(t *testing.T, mysql *testenv.MySQL, zkServer *testenv.ZooKeeper) (string, string) {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("go", "build", "-o", dir+"/", "../auth").CombinedOutput(); err != nil {
		t.Fatalf("build auth: %v\n%s", err, out)
	}
	// Auth signs with the key the nodes verify: the package's signer.
	privPEM, err := token.MarshalPrivateKeyPEM(signerKey)
	if err != nil {
		t.Fatal(err)
	}
	listen, internal := freeAddr(t), freeAddr(t)
	cmd := exec.Command(filepath.Join(dir, "auth"))
	cmd.Env = append(os.Environ(),
		"HERALD_LISTEN_ADDR="+listen, "HERALD_INTERNAL_ADDR="+internal,
		"HERALD_MYSQL_DSN="+mysql.DSN, "HERALD_ZOOKEEPER="+zkServer.Addr,
		"HERALD_ZK_SESSION_TIMEOUT=2s", "HERALD_JWT_PRIVATE_KEY="+string(privPEM), "HERALD_LOG_LEVEL=warn")
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Signal(syscall.SIGTERM); cmd.Wait() })
	// Ready but for the push-servers, which start after it: MySQL migrated (the key below needs the
	// schema) and ZooKeeper watched.
	eventually(t, "auth's MySQL and ZooKeeper ready", func() error {
		resp, err := http.Get("http://" + internal + "/readyz")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var body struct{ Checks map[string]string }
		if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
			return err
		}
		if body.Checks["mysql"] != "ok" || body.Checks["zookeeper"] != "ok" {
			return fmt.Errorf("%s %v", resp.Status, body.Checks)
		}
		return nil
	})
	db, err := mysqldb.Open(context.Background(), mysql.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	key := createKey(t, db)
	return "http://" + listen, key
}

func createKey(t testing.TB, db *sql.DB) string {
	key, _, err := apikey.NewStore(db).Create(context.Background(), "push-server test")
	if err != nil {
		t.Fatal(err)
	}
	return key
}

// upgradeStatus is the HTTP status of an upgrade attempt (101 when it succeeded).
func upgradeStatus(t testing.TB, url string) int {
	t.Helper()
	conn, _, _, err := ws.Dial(context.Background(), url)
	if se, ok := err.(ws.StatusError); ok {
		return int(se)
	}
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
	return 101
}
