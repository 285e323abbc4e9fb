package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/heraldpush/herald/pkg/apikey"
	"github.com/heraldpush/herald/pkg/client"
	"github.com/heraldpush/herald/pkg/mysqldb"
	"github.com/heraldpush/herald/pkg/testenv"
	"github.com/heraldpush/herald/pkg/token"
	"github.com/heraldpush/herald/pkg/wire"
)

const (
	secret        = "admin-test-internal-secret"
	adminUser     = "ops"
	adminPassword = "correct horse battery"
)

// The package's tests share one set of servers: push-route and two push-servers (real binaries built
// from the workspace) and one admin started through run, as main starts it.
var (
	env struct {
		mysql *testenv.MySQL
		redis *testenv.Redis
		zk    *testenv.ZooKeeper
		kafka *testenv.Kafka
	}
	signer      *token.Signer
	pubPEM      string
	binDir      string
	routeURL    string
	routeIntURL string
	consoleKey  string // the API key admin uses against push-route
	nodeA       *pushServer
	nodeB       *pushServer
	adminURL    string
	adminIntURL string
	testDB      *sql.DB
)

func TestMain(m *testing.M) {
	pub, priv, err := token.GenerateKey()
	if err != nil {
		panic(err)
	}
	signer = token.NewSigner(priv, time.Hour)
	b, _ := token.MarshalPublicKeyPEM(pub)
	pubPEM = string(b)
	testenv.Main(m, func(g *testenv.Group) (err error) {
		if env.mysql, err = g.MySQL(); err != nil {
			return err
		}
		if env.redis, err = g.Redis(); err != nil {
			return err
		}
		if env.zk, err = g.ZooKeeper(); err != nil {
			return err
		}
		if env.kafka, err = g.Kafka(wire.UpstreamTopic); err != nil {
			return err
		}
		return setup()
	})
}

// setup builds push-route and push-server, starts them, then starts admin in this process.
func setup() error {
	var err error
	if binDir, err = os.MkdirTemp("", "herald-admin-test-"); err != nil {
		return err
	}
	if out, err := exec.Command("go", "build", "-o", binDir+"/", "../push-route", "../push-server").CombinedOutput(); err != nil {
		return fmt.Errorf("build push-route and push-server: %v\n%s", err, out)
	}
	if testDB, err = mysqldb.Open(context.Background(), env.mysql.DSN); err != nil {
		return err
	}
	listen, internal := mustFreeAddr(), mustFreeAddr()
	routeURL, routeIntURL = "http://"+listen, "http://"+internal
	// A key cache TTL of 0 makes push-route check the key on every call, so a revoked key fails at once.
	if _, err := startProcess("push-route", map[string]string{
		"HERALD_LISTEN_ADDR": listen, "HERALD_INTERNAL_ADDR": internal,
		"HERALD_MYSQL_DSN": env.mysql.DSN, "HERALD_REDIS_ADDR": env.redis.Addr, "HERALD_ZOOKEEPER": env.zk.Addr,
		"HERALD_ZK_SESSION_TIMEOUT": "2s", "HERALD_INTERNAL_SECRET": secret, "HERALD_KEY_CACHE_TTL": "0s",
		"HERALD_LOG_LEVEL": "warn",
	}); err != nil {
		return err
	}
	// Ready, not only up: push-route migrates the schema once MySQL answers, and the key needs it.
	if err := testenv.WaitHTTP(routeIntURL+"/readyz", 30*time.Second); err != nil {
		return err
	}
	if consoleKey, _, err = apikey.NewStore(testDB).Create(context.Background(), "admin console"); err != nil {
		return err
	}
	if nodeA, err = startPushServer("ps-a"); err != nil {
		return err
	}
	if nodeB, err = startPushServer("ps-b"); err != nil {
		return err
	}
	if err := testenv.WaitHTTP(routeIntURL+"/readyz", 30*time.Second); err != nil {
		return err
	}

	vars := adminEnv(map[string]string{"HERALD_ADMIN_USER": adminUser, "HERALD_ADMIN_PASSWORD": adminPassword})
	adminURL, adminIntURL = "http://"+vars["HERALD_LISTEN_ADDR"], "http://"+vars["HERALD_INTERNAL_ADDR"]
	go func() {
		if err := run(context.Background(), nil, func(k string) string { return vars[k] }, io.Discard); err != nil {
			fmt.Fprintln(os.Stderr, "admin:", err)
		}
	}()
	return testenv.WaitHTTP(adminIntURL+"/readyz", 30*time.Second)
}

// adminEnv is the environment of an admin process on fresh ports, with extra on top.
func adminEnv(extra map[string]string) map[string]string {
	vars := map[string]string{
		"HERALD_LISTEN_ADDR":        mustFreeAddr(),
		"HERALD_INTERNAL_ADDR":      mustFreeAddr(),
		"HERALD_MYSQL_DSN":          env.mysql.DSN,
		"HERALD_ZOOKEEPER":          env.zk.Addr,
		"HERALD_ZK_SESSION_TIMEOUT": "2s",
		"HERALD_PUSH_API_URL":       routeURL,
		"HERALD_PUSH_API_KEY":       consoleKey,
		"HERALD_INTERNAL_SECRET":    secret,
		"HERALD_KAFKA_BROKERS":      env.kafka.Brokers[0],
		"HERALD_SESSION_KEY":        "a session key for the admin tests, long enough",
		"HERALD_BCRYPT_COST":        fmt.Sprint(bcrypt.MinCost),
		"HERALD_LOGIN_RATE_PER_IP":  "1000",
		"HERALD_RATE_INTERVAL":      "1s",
		"HERALD_LOG_LEVEL":          "warn",
	}
	for k, v := range extra {
		vars[k] = v
	}
	return vars
}

// pushServer is a push-server process.
type pushServer struct {
	id, wsURL, internalURL string
	cmd                    *exec.Cmd
}

func startPushServer(id string) (*pushServer, error) {
	pub, internal := mustFreeAddr(), mustFreeAddr()
	ps := &pushServer{id: id, wsURL: "ws://" + pub + "/ws", internalURL: "http://" + internal}
	var err error
	ps.cmd, err = startProcess("push-server", map[string]string{
		"HERALD_NODE_ID": id, "HERALD_LISTEN_ADDR": pub, "HERALD_INTERNAL_ADDR": internal,
		"HERALD_REDIS_ADDR": env.redis.Addr, "HERALD_ZOOKEEPER": env.zk.Addr, "HERALD_ZK_SESSION_TIMEOUT": "2s",
		"HERALD_JWT_PUBLIC_KEYS": pubPEM, "HERALD_INTERNAL_SECRET": secret, "HERALD_PUSH_ROUTE_URL": routeIntURL,
		"HERALD_KAFKA_BROKERS":  env.kafka.Brokers[0],
		"HERALD_DRAIN_INTERVAL": "10ms", "HERALD_LOG_LEVEL": "warn", "HERALD_WORKERS": "8",
	})
	if err != nil {
		return nil, err
	}
	return ps, testenv.WaitHTTP(ps.internalURL+"/readyz", 30*time.Second)
}

// startProcess runs one of the built binaries with the given HERALD_* environment; its output goes to
// a log file beside it, and it dies with the test binary.
func startProcess(name string, vars map[string]string) (*exec.Cmd, error) {
	cmd := exec.Command(filepath.Join(binDir, name))
	cmd.Env = os.Environ()
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	logName := name
	if id := vars["HERALD_NODE_ID"]; id != "" {
		logName = id
	}
	logFile, err := os.Create(filepath.Join(binDir, logName+".log"))
	if err != nil {
		return nil, err
	}
	cmd.Stdout, cmd.Stderr = logFile, logFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	return cmd, cmd.Start()
}

// eventually is the package tests' name for testenv.Eventually.
var eventually = testenv.Eventually

// device connects a Go client for uid to node ps, for the length of the test.
func device(t testing.TB, ps *pushServer, uid, name string) *client.Conn {
	t.Helper()
	tok, _, err := signer.Sign(uid, name)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(context.Background(), client.Config{Token: tok, WSURL: ps.wsURL, UID: uid, Device: name})
	if err != nil {
		t.Fatalf("dial %s as %s: %v", ps.id, uid, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func nextPush(t testing.TB, c *client.Conn) wire.Push {
	t.Helper()
	select {
	case p, ok := <-c.Pushes():
		if !ok {
			t.Fatalf("connection closed: %v", c.Err())
		}
		return p
	case <-time.After(10 * time.Second):
		t.Fatal("no push within 10s")
	}
	return wire.Push{}
}

// closedBy waits for the server to close c and returns the close code.
func closedBy(t testing.TB, c *client.Conn) int {
	t.Helper()
	select {
	case <-c.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("connection still open after 10s")
	}
	var ce *client.CloseError
	if !errors.As(c.Err(), &ce) {
		t.Fatalf("connection ended with %v, not a close frame", c.Err())
	}
	return ce.Code
}

// reply is an HTTP answer, read.
type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) code() string {
	var e struct{ Error struct{ Code string } }
	json.Unmarshal(r.body, &e)
	return e.Error.Code
}

func decode[T any](t testing.TB, r reply) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}

// browser is an HTTP client with a cookie jar that does not follow redirects, to see them.
type browser struct {
	t    testing.TB
	http *http.Client
	base string
}

func newBrowser(t testing.TB, base string) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, base: base, http: &http.Client{
		Jar:           jar,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}}
}

func (b *browser) do(method, path string, body io.Reader, header http.Header) reply {
	b.t.Helper()
	req, err := http.NewRequest(method, b.base+path, body)
	if err != nil {
		b.t.Fatal(err)
	}
	for k, v := range header {
		req.Header[k] = v
	}
	resp, err := b.http.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: out}
}

func (b *browser) get(path string) reply { return b.do(http.MethodGet, path, nil, nil) }

func (b *browser) postForm(path string, form url.Values) reply {
	return b.do(http.MethodPost, path, strings.NewReader(form.Encode()), http.Header{"Content-Type": {"application/x-www-form-urlencoded"}})
}

func (b *browser) postJSON(path string, v any, header http.Header) reply {
	js, _ := json.Marshal(v)
	if header == nil {
		header = http.Header{}
	}
	header.Set("Content-Type", "application/json")
	return b.do(http.MethodPost, path, bytes.NewReader(js), header)
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// csrfOf returns the CSRF token of the first form on a page.
func csrfOf(t testing.TB, r reply) string {
	t.Helper()
	m := csrfInput.FindSubmatch(r.body)
	if m == nil {
		t.Fatalf("no csrf field in page (%d): %.300s", r.status, r.body)
	}
	return string(m[1])
}

// login logs b in with the form, as a person would, and returns the session's CSRF token.
func (b *browser) login(user, password string) string {
	b.t.Helper()
	page := b.get("/login")
	r := b.postForm("/login", url.Values{"csrf": {csrfOf(b.t, page)}, "username": {user}, "password": {password}, "next": {"/"}})
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/" {
		b.t.Fatalf("login: %d %s", r.status, r.body)
	}
	return csrfOf(b.t, b.get("/push"))
}

// api calls admin's JSON API with Basic credentials.
func api(t testing.TB, method, path string, body any) reply {
	t.Helper()
	var rd io.Reader
	switch v := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(v)
	default:
		js, _ := json.Marshal(v)
		rd = bytes.NewReader(js)
	}
	req, _ := http.NewRequest(method, adminURL+path, rd)
	req.SetBasicAuth(adminUser, adminPassword)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("%s %s: Content-Type %q, body %.300s", method, path, ct, out)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: out}
}

// pushRouteStatus is the status push-route answers a call made with key.
func pushRouteStatus(t testing.TB, key string) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, routeURL+"/v1/users/nobody/connections", nil)
	req.Header.Set("Authorization", "Bearer "+key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

var insertMu sync.Mutex

// insertUpstream stores n archived upstream messages of uid, the newest at now, one millisecond apart.
func insertUpstream(t testing.TB, uid string, n int, now time.Time) {
	t.Helper()
	insertMu.Lock()
	defer insertMu.Unlock()
	for i := range n {
		ts := now.Add(-time.Duration(i) * time.Millisecond).UnixMilli()
		_, err := testDB.Exec(`INSERT INTO upstream_messages (id, uid, device, conn_id, node, ts, data, kafka_partition, kafka_offset)
			VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?)`,
			fmt.Sprintf("up-%s-%03d", uid, i), uid, "phone", "conn-"+uid, "ps-a", ts,
			fmt.Sprintf(`{"text":"reading %d from %s","battery":%d}`, i, uid, 90-i%50), i)
		if err != nil {
			t.Fatal(err)
		}
	}
}

// mustFreeAddr is testenv.FreeAddr for TestMain's setup, where there is no test to fail.
func mustFreeAddr() string {
	addr, err := testenv.FreeAddr()
	if err != nil {
		panic(err)
	}
	return addr
}
