package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/testenv"
)

func TestMySQLDown(t *testing.T) {
	mysql := testenv.NewMySQL(t)
	a := startAuth(t, servers{mysql: mysql}, nil)
	registerNode(t, sharedZK, node("ps-mysql-down"))
	if err := a.accounts.Create(context.Background(), "ivan", "pw"); err != nil {
		t.Fatal(err)
	}
	key, _, err := a.keys.Create(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	login := func() reply {
		return post(t, a.url+"/v1/login", "", map[string]string{"uid": "ivan", "password": "pw", "device": "d"})
	}
	eventually(t, "login works", func() error {
		if r := login(); r.status != 200 {
			return fmt.Errorf("%d %s", r.status, r.body)
		}
		return nil
	})

	if err := mysql.Stop(); err != nil {
		t.Fatal(err)
	}
	if r := login(); r.status != 503 || r.errorCode() != "unavailable" {
		t.Fatalf("login with MySQL down: %d %s, want 503 unavailable", r.status, r.body)
	}
	if r := post(t, a.url+"/v1/tokens", "Bearer "+key, map[string]string{"uid": "ivan", "device": "d"}); r.status != 503 {
		t.Fatalf("tokens with MySQL down: %d %s, want 503", r.status, r.body)
	}
	for _, base := range []string{a.url, a.internalURL} {
		r := get(t, base+"/readyz")
		if r.status != 503 || !strings.Contains(string(r.body), "mysql:") || strings.Contains(string(r.body), "zookeeper:") {
			t.Fatalf("%s/readyz with MySQL down: %d %s, want 503 naming mysql only", base, r.status, r.body)
		}
	}
	if r := get(t, a.url+"/healthz"); r.status != 200 {
		t.Fatalf("healthz with MySQL down: %d", r.status)
	}

	if err := mysql.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "login after MySQL is back", func() error {
		if r := login(); r.status != 200 {
			return fmt.Errorf("%d %s", r.status, r.body)
		}
		return nil
	})
	if r := get(t, a.url+"/readyz"); r.status != 200 {
		t.Fatalf("readyz after MySQL is back: %d %s", r.status, r.body)
	}
}

// TestStartsWithMySQLDown: auth comes up without MySQL (healthy, not ready, logins 503), and serves
// once MySQL answers, migrating the schema itself.
func TestStartsWithMySQLDown(t *testing.T) {
	mysql := testenv.NewMySQL(t)
	if err := mysql.Stop(); err != nil {
		t.Fatal(err)
	}
	a := launchAuth(t, servers{mysql: mysql}, nil)
	registerNode(t, sharedZK, node("ps-mysql-late"))
	if r := get(t, a.internalURL+"/readyz"); r.status != 503 || !strings.Contains(string(r.body), "mysql:") {
		t.Fatalf("readyz with MySQL down at start: %d %s, want 503 naming mysql", r.status, r.body)
	}
	login := post(t, a.url+"/v1/login", "", map[string]string{"uid": "nobody", "password": "pw", "device": "d"})
	if login.status != 503 || login.errorCode() != "unavailable" {
		t.Fatalf("login with MySQL down at start: %d %s, want 503 unavailable", login.status, login.body)
	}
	if err := mysql.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ready once MySQL is up", func() error {
		if r := get(t, a.internalURL+"/readyz"); r.status != 200 {
			return fmt.Errorf("%d %s", r.status, r.body)
		}
		return nil
	})
	// The schema is there: an unknown account is a clean 401, not a database error.
	if r := post(t, a.url+"/v1/login", "", map[string]string{"uid": "nobody", "password": "pw", "device": "d"}); r.status != 401 {
		t.Fatalf("login after MySQL came up: %d %s, want 401", r.status, r.body)
	}
}

func TestZooKeeperDown(t *testing.T) {
	zk := testenv.NewZooKeeper(t)
	a := startAuth(t, servers{zk: zk}, nil)
	registerNode(t, zk, node("ps-zk-down"))
	if err := a.accounts.Create(context.Background(), "judy", "pw"); err != nil {
		t.Fatal(err)
	}
	login := func() reply {
		return post(t, a.url+"/v1/login", "", map[string]string{"uid": "judy", "password": "pw", "device": "d"})
	}
	eventually(t, "login works", func() error {
		if r := login(); r.status != 200 {
			return fmt.Errorf("%d %s", r.status, r.body)
		}
		return nil
	})

	if err := zk.Stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "readyz names zookeeper", func() error {
		r := get(t, a.internalURL+"/readyz")
		if r.status != 503 || !strings.Contains(string(r.body), "zookeeper:") || strings.Contains(string(r.body), "mysql:") {
			return fmt.Errorf("%d %s", r.status, r.body)
		}
		return nil
	})
	// Once the session timeout has passed the node list may be stale: no more tokens for nodes that
	// may be gone.
	eventually(t, "login refused", func() error {
		if r := login(); r.status != 503 || r.errorCode() != "unavailable" {
			return fmt.Errorf("%d %s", r.status, r.body)
		}
		return nil
	})

	if err := zk.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "login after ZooKeeper is back", func() error {
		if r := login(); r.status != 200 {
			return fmt.Errorf("%d %s", r.status, r.body)
		}
		return nil
	})
}

func TestRingChoice(t *testing.T) {
	zk := testenv.NewZooKeeper(t)
	a := startAuth(t, servers{zk: zk}, nil)
	key, _, err := a.keys.Create(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	mint := func(uid, device string) tokenResponse {
		r := post(t, a.url+"/v1/tokens", "Bearer "+key, map[string]string{"uid": uid, "device": device})
		if r.status != http.StatusOK {
			t.Fatalf("tokens: %d %s", r.status, r.body)
		}
		return decode[tokenResponse](t, r)
	}
	regA := registerNode(t, zk, node("ps-a"))
	registerNode(t, zk, node("ps-b"))
	uids := make([]string, 200)
	for i := range uids {
		uids[i] = fmt.Sprint("user-", i)
	}
	eventually(t, "both nodes in the ring", func() error {
		seen := map[string]bool{}
		for _, uid := range uids {
			seen[mint(uid, "d").Server.ID] = true
		}
		if !seen["ps-a"] || !seen["ps-b"] {
			return fmt.Errorf("nodes seen: %v", seen)
		}
		return nil
	})
	t.Run("one user's devices meet on one node", func(t *testing.T) {
		for _, uid := range uids[:20] {
			first := mint(uid, "phone").Server.ID
			for _, dev := range []string{"tablet", "web", "watch"} {
				if got := mint(uid, dev).Server.ID; got != first {
					t.Fatalf("%s: device %s on %s, phone on %s", uid, dev, got, first)
				}
			}
		}
	})
	t.Run("draining node takes no new logins", func(t *testing.T) {
		if err := regA.SetDraining(true); err != nil {
			t.Fatal(err)
		}
		eventually(t, "every uid on ps-b", func() error {
			for _, uid := range uids {
				if got := mint(uid, "d").Server.ID; got != "ps-b" {
					return fmt.Errorf("%s sent to %s", uid, got)
				}
			}
			return nil
		})
	})
}

func TestMetricsAndShutdown(t *testing.T) {
	a := startAuth(t, servers{}, nil)
	post(t, a.url+"/v1/login", "", map[string]string{"uid": "nobody", "password": "x", "device": "d"})
	r := get(t, a.internalURL+"/metrics")
	for _, want := range []string{`herald_auth_logins_total{result="bad_credentials"}`, `herald_http_requests_total{route="login",status="401"}`, "go_goroutines"} {
		if !strings.Contains(string(r.body), want) {
			t.Fatalf("metrics lack %s", want)
		}
	}
	if r := get(t, a.url+"/metrics"); r.status != 404 {
		t.Fatalf("metrics reachable on the public listener: %d", r.status)
	}
	// startAuth's cleanup cancels run's context (as SIGTERM does) and fails the test unless run
	// returns nil promptly.
}

// TestMySQLFrozen: with MariaDB stopped (SIGSTOP: connections hang, nothing is refused), logins and
// token requests answer 503 unavailable within -mysql-timeout, even more of them at once than the pool
// has connections, instead of queueing behind the connections the frozen server holds.
func TestMySQLFrozen(t *testing.T) {
	mysql := testenv.NewMySQL(t)
	a := startAuth(t, servers{mysql: mysql}, nil)
	registerNode(t, sharedZK, node("ps-mysql-frozen"))
	if err := a.accounts.Create(context.Background(), "olga", "pw"); err != nil {
		t.Fatal(err)
	}
	key, _, err := a.keys.Create(context.Background(), "k")
	if err != nil {
		t.Fatal(err)
	}
	testenv.Freeze(t, mysql.PID())

	hc := &http.Client{Timeout: 10 * time.Second}
	call := func(path, authz, body string) string {
		req, _ := http.NewRequest(http.MethodPost, a.url+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		if authz != "" {
			req.Header.Set("Authorization", authz)
		}
		resp, err := hc.Do(req)
		if err != nil {
			return "no answer within 10 s"
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		r := reply{status: resp.StatusCode, body: b}
		return fmt.Sprintf("%d %s", r.status, r.errorCode())
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	outcomes := map[string]int{}
	add := func(o string) {
		mu.Lock()
		outcomes[o]++
		mu.Unlock()
	}
	for i := range 60 {
		wg.Go(func() {
			add(call("/v1/tokens", "Bearer "+key, fmt.Sprintf(`{"uid":"u%d","device":"d"}`, i)))
		})
	}
	for range 5 {
		wg.Go(func() { add(call("/v1/login", "", `{"uid":"olga","password":"pw","device":"d"}`)) })
	}
	wg.Wait()
	if outcomes["503 unavailable"] != 65 {
		t.Fatalf("outcomes %v, want 65 × 503 unavailable", outcomes)
	}
}

// TestNotReadyWithoutPushServers: while no push-server takes logins, every login would answer 503
// no_push_server, so /readyz says so and a load balancer sends logins elsewhere.
func TestNotReadyWithoutPushServers(t *testing.T) {
	zk := testenv.NewZooKeeper(t)
	a := startAuth(t, servers{zk: zk}, nil)
	notReady := func() error {
		r := get(t, a.internalURL+"/readyz")
		if r.status != 503 || !strings.Contains(string(r.body), "push-servers:") {
			return fmt.Errorf("%d %s, want 503 naming push-servers", r.status, r.body)
		}
		return nil
	}
	eventually(t, "not ready with no push-server registered", notReady)
	reg := registerNode(t, zk, node("ps-ready"))
	eventually(t, "ready with one", func() error {
		if r := get(t, a.internalURL+"/readyz"); r.status != 200 {
			return fmt.Errorf("%d %s", r.status, r.body)
		}
		return nil
	})
	if err := reg.SetDraining(true); err != nil {
		t.Fatal(err)
	}
	eventually(t, "not ready when the only one drains", notReady)
}
