package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/client"
	"github.com/heraldpush/herald/pkg/testenv"
	"github.com/heraldpush/herald/pkg/token"
)

// runningStack is a stack started by startStack.
type runningStack struct {
	dir  string
	st   Stack      // stack.json once the stack is up
	done chan error // run's result
	stop func()     // stops the stack and checks it returned nil; safe to call twice
}

// startStack builds the services, runs the stack with args added to the test's own (-dir, -bin,
// -base-port, -log-level) until the test ends, and waits for stack.json.
func startStack(t *testing.T, base int, args ...string) *runningStack {
	t.Helper()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	build := exec.Command("go", "build", "-o", bin+"/", "../../services/auth", "../../services/push-server", "../../services/push-route", "../../services/admin")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build services: %v\n%s", err, out)
	}
	ctx, cancel := context.WithCancel(context.Background())
	rs := &runningStack{dir: dir, done: make(chan error, 1)}
	go func() {
		rs.done <- run(ctx, append([]string{"-dir", dir, "-bin", bin, "-base-port", fmt.Sprint(base), "-log-level", "warn", "-clients", "../../clients/js"}, args...),
			func(string) string { return "" }, io.Discard)
	}()
	stopped := false
	rs.stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-rs.done:
			if err != nil {
				t.Errorf("stack returned %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("stack did not stop within 60s")
		}
	}
	t.Cleanup(rs.stop)

	deadline := time.Now().Add(90 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "stack.json"))
		if err == nil && json.Unmarshal(b, &rs.st) == nil {
			return rs
		}
		select {
		case err := <-rs.done:
			stopped = true // nothing left to stop or wait for
			logTails(t, filepath.Join(dir, "logs"))
			t.Fatalf("stack exited: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no stack.json after 90s")
		}
	}
}

// logTails logs the end of every service's log, which the test's temporary directory takes along.
func logTails(t *testing.T, dir string) {
	t.Helper()
	logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		lines := strings.Split(strings.TrimSpace(string(b)), "\n")
		t.Logf("--- end of %s:\n%s", filepath.Base(l), strings.Join(lines[max(0, len(lines)-10):], "\n"))
	}
}

// TestStack runs the local stack as `make run` does and checks what a newcomer would: stack.json,
// the demo login, and a dev-key token for a registered push-server that verifies with the public key.
func TestStack(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the services and starts every server")
	}
	base := testenv.FreePortRange(t, 20)
	authAddr := fmt.Sprintf("127.0.0.1:%d", base+1)
	rs := startStack(t, base)
	dir, st, done, stop := rs.dir, rs.st, rs.done, rs.stop
	ctx := context.Background()
	if st.AuthURL != "http://"+authAddr || st.PushAPIURL == "" || st.AdminURL == "" || st.APIKey == "" || st.MySQLDSN == "" || st.ZooKeeper == "" || st.RedisAddr == "" || len(st.KafkaBrokers) == 0 || st.AdminPassword == "" {
		t.Fatalf("stack.json incomplete: %+v", st)
	}

	if len(st.PushServers) != 2 {
		t.Fatalf("push_servers %+v, want two", st.PushServers)
	}
	if st.RedisCluster || !slices.Equal(st.RedisAddrs, []string{st.RedisAddr}) || !slices.Equal(st.AuthURLs, []string{st.AuthURL}) || !slices.Equal(st.PushAPIURLs, []string{st.PushAPIURL}) {
		t.Fatalf("stack.json's lists do not match the plain stack: %+v", st)
	}
	// Drain ps-1 so every token names ps-2, and check the stack's nodes answer their internal API.
	req, _ := http.NewRequest(http.MethodPost, st.PushServers[0].InternalURL+"/internal/v1/drain", nil)
	req.Header.Set("X-Herald-Internal-Secret", st.InternalSecret)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("drain ps-1: %v %v", resp, err)
	}
	node := st.PushServers[1]

	pubKeys, err := token.LoadPublicKeys(filepath.Join(dir, "keys", "jwt-ed25519.pub.pem"))
	if err != nil {
		t.Fatal(err)
	}
	verifier := token.NewVerifier(pubKeys...)
	check := func(name, path, authz string, body map[string]string, wantUID string) string {
		var resp struct {
			Token  string
			Server struct {
				ID    string `json:"id"`
				WSURL string `json:"ws_url"`
			}
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			status, b := post(t, st.AuthURL+path, authz, body)
			if status == http.StatusOK {
				if err := json.Unmarshal(b, &resp); err != nil {
					t.Fatal(err)
				}
				if resp.Server.ID == node.ID {
					break // auth has seen ps-1 drain
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d %s", name, status, b)
			}
			time.Sleep(100 * time.Millisecond)
		}
		claims, err := verifier.Verify(resp.Token)
		if err != nil || claims.UID != wantUID {
			t.Fatalf("%s: token claims %+v, %v", name, claims, err)
		}
		if resp.Server.ID != node.ID || resp.Server.WSURL != node.WSURL {
			t.Fatalf("%s: server %+v, want %+v", name, resp.Server, node)
		}
		return resp.Token
	}
	tok := check("dev key", "/v1/tokens", "Bearer "+st.APIKey, map[string]string{"uid": "user-42", "device": "phone"}, "user-42")

	// The README's walk-through: a device connects with the token, a backend pushes to it.
	dev, err := client.Dial(ctx, client.Config{Token: tok, WSURL: node.WSURL})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	status, b := post(t, st.PushAPIURL+"/v1/push", "Bearer "+st.APIKey, map[string]any{"uids": []string{"user-42"}, "data": map[string]string{"text": "hello"}})
	if status != http.StatusOK || !strings.Contains(string(b), `"delivered":1`) {
		t.Fatalf("push: %d %s", status, b)
	}
	expectPush(t, dev, `{"text":"hello"}`)
	// kill -9 of a service: the stack reports it, keeps running, starts it again and names the new
	// process in stack.json.
	old := st.PIDs["push-route"]
	if old == 0 || st.PIDs["redis-server"] == 0 || st.PIDs["stack"] == 0 {
		t.Fatalf("stack.json pids %v lack a process", st.PIDs)
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		var now Stack
		if b, err := os.ReadFile(filepath.Join(dir, "stack.json")); err == nil && json.Unmarshal(b, &now) == nil {
			if pid := now.PIDs["push-route"]; pid != 0 && pid != old {
				if status, _ := post(t, st.PushAPIURL+"/v1/push", "Bearer "+st.APIKey, map[string]any{"uids": []string{"user-42"}, "data": 1}); status == http.StatusOK {
					break
				}
			}
		}
		select {
		case err := <-done:
			t.Fatalf("the stack stopped when push-route died: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("push-route not back within 30s of kill -9")
		}
	}
	check("demo login", "/v1/login", "", map[string]string{"uid": st.DemoUID, "password": st.DemoPassword, "device": "laptop"}, st.DemoUID)

	stop()
	if c, err := net.DialTimeout("tcp", authAddr, time.Second); err == nil {
		c.Close()
		t.Fatal("auth still listening after the stack stopped")
	}
}

// TestClusterStack runs the stack at production shape, as `make run-cluster` does, and checks that
// stack.json names every instance and server, that the second auth and push-route serve, that the
// control API knows the Redis and ZooKeeper roles, and that a push crosses instances: a device logged in
// through auth-2 gets a push sent through push-route-2.
func TestClusterStack(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the services and starts every server")
	}
	base := testenv.FreePortRange(t, 20)
	st := startStack(t, base, "-cluster").st

	if len(st.PushServers) != 3 || len(st.AuthURLs) != 2 || len(st.PushAPIURLs) != 2 {
		t.Fatalf("stack.json: %d push-servers, auth %v, push-route %v; want 3, 2 and 2", len(st.PushServers), st.AuthURLs, st.PushAPIURLs)
	}
	if st.AuthURL != st.AuthURLs[0] || st.PushAPIURL != st.PushAPIURLs[0] || st.AuthURLs[1] != fmt.Sprintf("http://127.0.0.1:%d", base+6) || st.PushAPIURLs[1] != fmt.Sprintf("http://127.0.0.1:%d", base+5) {
		t.Fatalf("stack.json: auth %s %v, push-route %s %v", st.AuthURL, st.AuthURLs, st.PushAPIURL, st.PushAPIURLs)
	}
	if !st.RedisCluster || len(st.RedisAddrs) != 6 || st.RedisAddr != st.RedisAddrs[0] {
		t.Fatalf("stack.json: redis_cluster %v, redis_addrs %v, redis_addr %s; want a cluster of 6", st.RedisCluster, st.RedisAddrs, st.RedisAddr)
	}
	if zk := strings.Split(st.ZooKeeper, ","); len(zk) != 3 {
		t.Fatalf("stack.json: zookeeper %q, want three servers", st.ZooKeeper)
	}
	if len(st.KafkaBrokers) != 3 {
		t.Fatalf("stack.json: kafka_brokers %v, want three", st.KafkaBrokers)
	}
	for _, name := range []string{"push-route-1", "push-route-2", "auth-1", "auth-2", "ps-1", "ps-2", "ps-3", "admin",
		"redis-1", "redis-6", "zookeeper-1", "zookeeper-3", "mariadbd", "stack"} {
		if st.PIDs[name] == 0 {
			t.Errorf("stack.json pids %v lack %s", st.PIDs, name)
		}
	}

	// The control API: every server with the roles of a 3+3 Redis Cluster and a 3-server ensemble,
	// and the master of a route key.
	var servers struct {
		Servers []struct {
			Name, Addr, Role string
			PID              int
			Running          bool
		}
	}
	getJSON(t, st.ControlURL+"/servers", &servers)
	roles := map[string]int{}
	for _, s := range servers.Servers {
		if !s.Running || s.Addr == "" {
			t.Errorf("GET /servers: %+v", s)
		}
		roles[s.Role]++
	}
	if len(servers.Servers) != 11 || roles["master"] != 3 || roles["replica"] != 3 || roles["leader"] != 1 || roles["follower"] != 2 {
		t.Fatalf("GET /servers: %+v, roles %v", servers.Servers, roles)
	}
	var master struct{ Name, Addr string }
	getJSON(t, st.ControlURL+"/redis/master?key="+url.QueryEscape("herald:route:{user-42}"), &master)
	if !strings.HasPrefix(master.Name, "redis-") || !slices.Contains(st.RedisAddrs, master.Addr) {
		t.Fatalf("GET /redis/master: %+v", master)
	}

	// A device logs in through auth-2 and gets a push sent through push-route-2.
	status, b := post(t, st.AuthURLs[1]+"/v1/login", "", map[string]string{"uid": st.DemoUID, "password": st.DemoPassword, "device": "laptop"})
	if status != http.StatusOK {
		t.Fatalf("login through auth-2: %d %s", status, b)
	}
	var login struct {
		Token  string
		Server struct {
			WSURL string `json:"ws_url"`
		}
	}
	if err := json.Unmarshal(b, &login); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dev, err := client.Dial(ctx, client.Config{Token: login.Token, WSURL: login.Server.WSURL})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	status, b = post(t, st.PushAPIURLs[1]+"/v1/push", "Bearer "+st.APIKey, map[string]any{"uids": []string{st.DemoUID}, "data": map[string]string{"text": "hello"}})
	if status != http.StatusOK {
		t.Fatalf("push through push-route-2: %d %s", status, b)
	}
	if !strings.Contains(string(b), `"delivered":1`) {
		t.Fatalf("push through push-route-2: %s, want delivered 1", b)
	}
	expectPush(t, dev, `{"text":"hello"}`)

	// A push of 100 uids (one connected) and a broadcast, through push-route-1.
	uids := []string{st.DemoUID}
	for i := range 99 {
		uids = append(uids, fmt.Sprintf("offline-%d", i))
	}
	status, b = post(t, st.PushAPIURLs[0]+"/v1/push", "Bearer "+st.APIKey, map[string]any{"uids": uids, "data": "many"})
	var many struct {
		Results []struct {
			UID       string
			Delivered int
		}
	}
	if err := json.Unmarshal(b, &many); status != http.StatusOK || err != nil || len(many.Results) != 100 || many.Results[0].Delivered != 1 {
		t.Fatalf("push of 100 uids: %d %s", status, b)
	}
	status, b = post(t, st.PushAPIURLs[0]+"/v1/broadcast", "Bearer "+st.APIKey, map[string]any{"data": "all"})
	if status != http.StatusOK || !strings.Contains(string(b), `"delivered":1`) {
		t.Fatalf("broadcast: %d %s", status, b)
	}
	for _, want := range []string{`"many"`, `"all"`} {
		expectPush(t, dev, want)
	}

	// A ttl push to a user who is offline reaches the device that user connects later, through a
	// token minted by auth-1 and whichever push-server it names.
	status, b = post(t, st.PushAPIURLs[1]+"/v1/push", "Bearer "+st.APIKey, map[string]any{"uids": []string{"late-user"}, "data": "kept", "ttl_s": 300})
	if status != http.StatusOK || !strings.Contains(string(b), `"stored":true`) {
		t.Fatalf("ttl push to an offline user: %d %s", status, b)
	}
	status, b = post(t, st.AuthURLs[0]+"/v1/tokens", "Bearer "+st.APIKey, map[string]string{"uid": "late-user", "device": "phone"})
	if err := json.Unmarshal(b, &login); status != http.StatusOK || err != nil {
		t.Fatalf("token for late-user: %d %s", status, b)
	}
	late, err := client.Dial(ctx, client.Config{Token: login.Token, WSURL: login.Server.WSURL})
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	expectPush(t, late, `"kept"`)

	// The console sees the three push-servers and drains one; logins then go to the other two.
	basic := "Basic " + base64.StdEncoding.EncodeToString([]byte(st.AdminUser+":"+st.AdminPassword))
	nodes := func() map[string]string {
		req, _ := http.NewRequest(http.MethodGet, st.AdminURL+"/api/v1/nodes", nil)
		req.Header.Set("Authorization", basic)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out struct{ Nodes []struct{ ID, State string } }
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET /api/v1/nodes: %d %v", resp.StatusCode, err)
		}
		states := map[string]string{}
		for _, n := range out.Nodes {
			states[n.ID] = n.State
		}
		return states
	}
	if got := nodes(); len(got) != 3 || got["ps-3"] != "live" {
		t.Fatalf("the console sees %v, want ps-1..3 live", got)
	}
	if status, b := post(t, st.AdminURL+"/api/v1/nodes/ps-3/drain", basic, nil); status != http.StatusAccepted {
		t.Fatalf("drain ps-3: %d %s", status, b)
	}
	testenv.Eventually(t, "ps-3 draining in the console", func() error {
		if got := nodes(); len(got) != 3 || got["ps-3"] != "draining" {
			return fmt.Errorf("nodes %v", got)
		}
		return nil
	})
	logins := func(prefix string) (toPS3 int) {
		for i := range 30 {
			status, b := post(t, st.AuthURLs[i%2]+"/v1/tokens", "Bearer "+st.APIKey, map[string]string{"uid": fmt.Sprintf("%s-%d", prefix, i), "device": "d"})
			if status != http.StatusOK {
				t.Fatalf("login: %d %s", status, b)
			}
			if strings.Contains(string(b), st.PushServers[2].WSURL) {
				toPS3++
			}
		}
		return toPS3
	}
	// auth sees the drain through its ZooKeeper watch, a moment after the node.
	testenv.Eventually(t, "logins avoid the drained ps-3", func() error {
		if n := logins("after-drain"); n != 0 {
			return fmt.Errorf("%d logins sent to the drained ps-3", n)
		}
		return nil
	})
	// Undrained, ps-3 is live again and auth hands it out.
	if status, b := post(t, st.AdminURL+"/api/v1/nodes/ps-3/undrain", basic, nil); status != http.StatusOK {
		t.Fatalf("undrain ps-3: %d %s", status, b)
	}
	testenv.Eventually(t, "logins reach ps-3 again", func() error {
		if got := nodes(); got["ps-3"] != "live" {
			return fmt.Errorf("nodes %v", got)
		}
		if logins("after-undrain") == 0 {
			return errors.New("no login sent to ps-3")
		}
		return nil
	})
}

func getJSON(t testing.TB, u string, v any) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %d %s", u, resp.StatusCode, b)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatalf("GET %s: %v: %s", u, err, b)
	}
}

func post(t testing.TB, url, authz string, body any) (int, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(fmt.Sprint(err))
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// freePortRange finds a base port whose public and internal ranges (base..base+n, +1000) are free.

// expectPush waits for the next push on c and checks its data (as JSON text).
func expectPush(t *testing.T, c *client.Conn, data string) {
	t.Helper()
	select {
	case p := <-c.Pushes():
		if string(p.Data) != data {
			t.Fatalf("got push %s, want %s", p.Data, data)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no push %s within 10 s", data)
	}
}
