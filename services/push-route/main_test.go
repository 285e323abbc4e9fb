package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/heraldpush/herald/pkg/apikey"
	"github.com/heraldpush/herald/pkg/client"
	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/mysqldb"
	"github.com/heraldpush/herald/pkg/routes"
	"github.com/heraldpush/herald/pkg/testenv"
	"github.com/heraldpush/herald/pkg/token"
	"github.com/heraldpush/herald/pkg/wire"
)

const secret = "test-internal-secret"

// The package's tests share one set of servers, one push-route and two push-servers (real binaries).
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
	apiKey      string
	nodeA       *pushServer
	nodeB       *pushServer
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

// setup builds the push-server binary and starts push-route and two push-servers for the package.
func setup() error {
	var err error
	if binDir, err = os.MkdirTemp("", "herald-push-route-test-"); err != nil {
		return err
	}
	if out, err := exec.Command("go", "build", "-o", binDir+"/", "../push-server").CombinedOutput(); err != nil {
		return fmt.Errorf("build push-server: %v\n%s", err, out)
	}
	listen, internal := mustFreeAddr(), mustFreeAddr()
	routeURL, routeIntURL = "http://"+listen, "http://"+internal
	vars := map[string]string{
		"HERALD_LISTEN_ADDR":        listen,
		"HERALD_INTERNAL_ADDR":      internal,
		"HERALD_MYSQL_DSN":          env.mysql.DSN,
		"HERALD_REDIS_ADDR":         env.redis.Addr,
		"HERALD_ZOOKEEPER":          env.zk.Addr,
		"HERALD_ZK_SESSION_TIMEOUT": "2s",
		"HERALD_INTERNAL_SECRET":    secret,
		"HERALD_NODE_TIMEOUT":       "1s",
		"HERALD_ROOM_HISTORY":       "50",
		"HERALD_MAX_UIDS":           "50",
		"HERALD_MAX_DATA":           "1024",
		"HERALD_MAX_HEADER":         "16384",
		"HERALD_LOG_LEVEL":          "warn",
	}
	go func() {
		if err := run(context.Background(), nil, func(k string) string { return vars[k] }, io.Discard); err != nil {
			fmt.Fprintln(os.Stderr, "push-route:", err)
		}
	}()
	if err := testenv.WaitHTTP(routeIntURL+"/healthz", 30*time.Second); err != nil {
		return err
	}
	db, err := mysqldb.Open(context.Background(), env.mysql.DSN)
	if err != nil {
		return err
	}
	defer db.Close()
	// push-route migrates in the background; the key table must exist first.
	if err := mysqldb.Migrate(context.Background(), db, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		return err
	}
	if apiKey, _, err = apikey.NewStore(db).Create(context.Background(), "push-route test"); err != nil {
		return err
	}
	if nodeA, err = startPushServer("ps-a", nil); err != nil {
		return err
	}
	if nodeB, err = startPushServer("ps-b", nil); err != nil {
		return err
	}
	return testenv.WaitHTTP(routeIntURL+"/readyz", 30*time.Second)
}

// pushServer is a push-server process.
type pushServer struct {
	id, wsURL, internalURL string
	cmd                    *exec.Cmd
}

func startPushServer(id string, extra map[string]string) (*pushServer, error) {
	pub, internal := mustFreeAddr(), mustFreeAddr()
	ps := &pushServer{id: id, wsURL: "ws://" + pub + "/ws", internalURL: "http://" + internal}
	ps.cmd = exec.Command(filepath.Join(binDir, "push-server"))
	ps.cmd.Env = append(os.Environ(),
		"HERALD_NODE_ID="+id, "HERALD_LISTEN_ADDR="+pub, "HERALD_INTERNAL_ADDR="+internal,
		"HERALD_REDIS_ADDR="+env.redis.Addr, "HERALD_ZOOKEEPER="+env.zk.Addr, "HERALD_ZK_SESSION_TIMEOUT=2s",
		"HERALD_JWT_PUBLIC_KEYS="+pubPEM, "HERALD_INTERNAL_SECRET="+secret, "HERALD_KAFKA_BROKERS="+env.kafka.Brokers[0],
		"HERALD_PUSH_ROUTE_URL="+routeIntURL, "HERALD_LOG_LEVEL=warn", "HERALD_WORKERS=8")
	for k, v := range extra {
		ps.cmd.Env = append(ps.cmd.Env, k+"="+v)
	}
	logFile, err := os.Create(filepath.Join(binDir, id+".log"))
	if err != nil {
		return nil, err
	}
	ps.cmd.Stdout, ps.cmd.Stderr = logFile, logFile
	ps.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := ps.cmd.Start(); err != nil {
		return nil, err
	}
	return ps, testenv.WaitHTTP(ps.internalURL+"/readyz", 30*time.Second)
}

func (ps *pushServer) kill() {
	ps.cmd.Process.Signal(syscall.SIGKILL)
	ps.cmd.Wait()
}

// eventually is the package tests' name for testenv.Eventually.
var eventually = testenv.Eventually

// device connects a Go client for uid to node ps.
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

func noPush(t testing.TB, c *client.Conn, within time.Duration) {
	t.Helper()
	select {
	case p := <-c.Pushes():
		t.Fatalf("unexpected push %+v", p)
	case <-time.After(within):
	}
}

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

func call(t testing.TB, method, path, key string, body any, header http.Header) reply {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = bytes.NewReader([]byte(b))
	default:
		js, _ := json.Marshal(b)
		rd = bytes.NewReader(js)
	}
	req, _ := http.NewRequest(method, routeURL+path, rd)
	for k, v := range header {
		req.Header[k] = v
	}
	if key != "" {
		req.Header.Set("Authorization", "Bearer "+key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func push(t testing.TB, body any) wire.PushResponse {
	t.Helper()
	r := call(t, http.MethodPost, "/v1/push", apiKey, body, nil)
	if r.status != 200 {
		t.Fatalf("push: %d %s", r.status, r.body)
	}
	var resp wire.PushResponse
	if err := json.Unmarshal(r.body, &resp); err != nil {
		t.Fatal(err)
	}
	return resp
}

func routeStore(t testing.TB) *routes.Store { return routes.NewStore(redisClient(t)) }

// redisClient is a client of the package's Redis, closed with the test.
func redisClient(t testing.TB) *redis.Client {
	rdb := redis.NewClient(&redis.Options{Addr: env.redis.Addr})
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// dialZK opens a ZooKeeper session for the test, to register stand-in push-servers.
func dialZK(t testing.TB) *discovery.Client {
	zk, err := discovery.Dial(env.zk.Addr, 5*time.Second, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(zk.Close)
	return zk
}

var (
	dbOnce sync.Once
	testDB *sql.DB
)

// openDB is the tests' own connection pool to the package's MySQL.
func openDB(t testing.TB) *sql.DB {
	dbOnce.Do(func() {
		var err error
		if testDB, err = mysqldb.Open(context.Background(), env.mysql.DSN); err != nil {
			t.Fatal(err)
		}
	})
	return testDB
}

// mustFreeAddr is testenv.FreeAddr for TestMain's setup, where there is no test to fail.
func mustFreeAddr() string {
	addr, err := testenv.FreeAddr()
	if err != nil {
		panic(err)
	}
	return addr
}

func (r reply) decode(v any) error { return json.Unmarshal(r.body, v) }
