package main

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"
	"github.com/redis/go-redis/v9"

	"github.com/heraldpush/herald/pkg/routes"
	"github.com/heraldpush/herald/pkg/testenv"
	"github.com/heraldpush/herald/pkg/token"
	"github.com/heraldpush/herald/pkg/wire"
)

// Servers shared by the package's tests; tests that stop a server start their own.
var (
	sharedRedis *testenv.Redis
	sharedZK    *testenv.ZooKeeper
	sharedKafka *testenv.Kafka
	signer      *token.Signer
	signerKey   ed25519.PrivateKey
	pubPEM      string
)

const secret = "test-internal-secret"

func TestMain(m *testing.M) {
	// The kill -9 test re-runs this binary as a real push-server process.
	if os.Getenv("HERALD_TEST_AS_PUSH_SERVER") == "1" {
		main()
		return
	}
	pub, priv, err := token.GenerateKey()
	if err != nil {
		panic(err)
	}
	signer, signerKey = token.NewSigner(priv, time.Hour), priv
	b, err := token.MarshalPublicKeyPEM(pub)
	if err != nil {
		panic(err)
	}
	pubPEM = string(b)
	testenv.Main(m, func(g *testenv.Group) (err error) {
		if sharedRedis, err = g.Redis(); err != nil {
			return err
		}
		if sharedKafka, err = g.Kafka(wire.UpstreamTopic); err != nil {
			return err
		}
		sharedZK, err = g.ZooKeeper()
		return err
	})
}

// node is one push-server started through run, as main starts it.
type node struct {
	id          string
	wsURL       string
	internalURL string
	redis       *testenv.Redis
	cancel      context.CancelFunc
	done        chan error
}

type nodeOpts struct {
	redis *testenv.Redis
	zk    *testenv.ZooKeeper
	kafka *testenv.Kafka
	env   map[string]string
}

// freeAddr is a port for a server the test starts (testenv.FreeAddr: not one the kernel may hand out).
func freeAddr(t testing.TB) string {
	t.Helper()
	addr, err := testenv.FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

func nodeEnv(t testing.TB, id string, o nodeOpts) (map[string]string, string, string) {
	if o.redis == nil {
		o.redis = sharedRedis
	}
	if o.zk == nil {
		o.zk = sharedZK
	}
	if o.kafka == nil {
		o.kafka = sharedKafka
	}
	// The stand-in push-route listens before the free ports are picked, so it cannot take one.
	pushRoute := newFakePushRoute(t)
	pub, internal := freeAddr(t), freeAddr(t)
	env := map[string]string{
		"HERALD_NODE_ID":            id,
		"HERALD_LISTEN_ADDR":        pub,
		"HERALD_INTERNAL_ADDR":      internal,
		"HERALD_REDIS_ADDR":         o.redis.Addr,
		"HERALD_ZOOKEEPER":          o.zk.Addr,
		"HERALD_ZK_SESSION_TIMEOUT": "2s",
		"HERALD_JWT_PUBLIC_KEYS":    pubPEM,
		"HERALD_INTERNAL_SECRET":    secret,
		"HERALD_KAFKA_BROKERS":      strings.Join(o.kafka.Brokers, ","),
		"HERALD_LOG_LEVEL":          "warn",
		"HERALD_WORKERS":            "8",
		// A push-route that takes every ack and has nothing pending; tests of acks and replay set
		// their own.
		"HERALD_PUSH_ROUTE_URL": pushRoute.url,
	}
	for k, v := range o.env {
		env[k] = v
	}
	return env, pub, internal
}

func startNode(t testing.TB, id string, o nodeOpts) *node {
	t.Helper()
	env, pub, internal := nodeEnv(t, id, o)
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{id: id, wsURL: "ws://" + pub + "/ws", internalURL: "http://" + internal, redis: o.redis, cancel: cancel, done: make(chan error, 1)}
	if n.redis == nil {
		n.redis = sharedRedis
	}
	go func() { n.done <- run(ctx, nil, func(k string) string { return env[k] }, io.Discard) }()
	t.Cleanup(func() { n.stop(t) })
	eventually(t, "node "+id+" ready", func() error {
		select {
		case err := <-n.done:
			close(n.done) // stop, at cleanup, has nothing to wait for
			t.Fatalf("node exited during start: %v", err)
		default:
		}
		resp, err := http.Get(n.internalURL + "/readyz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
	return n
}

// stop shuts the node down as SIGTERM does (a drain) and waits for run to return.
func (n *node) stop(t testing.TB) {
	n.cancel()
	select {
	case err, ok := <-n.done:
		if ok && err != nil {
			t.Errorf("node %s: run returned %v", n.id, err)
		}
		if ok {
			close(n.done)
		}
	case <-time.After(30 * time.Second):
		t.Errorf("node %s did not stop within 30s", n.id)
	}
}

// eventually is the package tests' name for testenv.Eventually.
var eventually = testenv.Eventually

func tokenFor(t testing.TB, uid, device string) string {
	t.Helper()
	tok, _, err := signer.Sign(uid, device)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// wsClient is a bare WebSocket client, so tests can send exactly the bytes they want.
type wsClient struct {
	t       testing.TB
	conn    net.Conn
	welcome wire.Welcome
}

func dial(t testing.TB, n *node, uid, device string) *wsClient {
	t.Helper()
	c, status := tryDial(t, n.wsURL+"?token="+tokenFor(t, uid, device))
	if c == nil {
		t.Fatalf("dial %s as %s: HTTP %d", n.id, uid, status)
	}
	return c
}

// tryDial returns the connected client with its welcome read, or nil and the HTTP status of a
// refused upgrade.
func tryDial(t testing.TB, url string) (*wsClient, int) {
	t.Helper()
	return tryDialWith(t, ws.Dialer{}, url)
}

// smallReceiveBuffer makes a dialer whose socket buffers little, so a client that does not read
// pushes back on the server quickly instead of after megabytes of kernel buffering.
func smallReceiveBuffer() ws.Dialer {
	return ws.Dialer{NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var err error
			rc.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
			return err
		}}
		return d.DialContext(ctx, network, addr)
	}}
}

func tryDialWith(t testing.TB, d ws.Dialer, url string) (*wsClient, int) {
	t.Helper()
	conn, br, _, err := d.Dial(context.Background(), url)
	if err != nil {
		var se ws.StatusError
		if ok := asStatus(err, &se); ok {
			return nil, int(se)
		}
		t.Fatalf("dial %s: %v", url, err)
	}
	if br != nil {
		// The server's first frames may have arrived with the handshake response.
		conn = bufferedConn{Conn: conn, r: br}
	}
	c := &wsClient{t: t, conn: conn}
	t.Cleanup(func() { conn.Close() })
	f := c.next()
	if err := json.Unmarshal(f, &c.welcome); err != nil || c.welcome.Type != wire.TypeWelcome {
		t.Fatalf("first frame %s, want welcome", f)
	}
	return c, 101
}

func asStatus(err error, se *ws.StatusError) bool {
	s, ok := err.(ws.StatusError)
	if ok {
		*se = s
	}
	return ok
}

func (c *wsClient) send(frame string) {
	c.t.Helper()
	if err := wsutil.WriteClientText(c.conn, []byte(frame)); err != nil {
		c.t.Fatalf("send %s: %v", frame, err)
	}
}

// next returns the next data frame's payload, failing on close or timeout.
func (c *wsClient) next() []byte {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, _, err := wsutil.ReadServerData(c.conn)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return b
}

// nextOfType skips frames until one of type typ.
func (c *wsClient) nextOfType(typ string) map[string]any {
	c.t.Helper()
	for {
		var m map[string]any
		b := c.next()
		if err := json.Unmarshal(b, &m); err != nil {
			c.t.Fatalf("frame %s: %v", b, err)
		}
		if m["type"] == typ {
			return m
		}
	}
}

// closed reads until the server closes and returns the close code and reason.
func (c *wsClient) closed() (int, string) {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(15 * time.Second))
	for {
		h, err := ws.ReadHeader(c.conn)
		if err != nil {
			c.t.Fatalf("connection ended without a close frame: %v", err)
		}
		payload := make([]byte, h.Length)
		if _, err := io.ReadFull(c.conn, payload); err != nil {
			c.t.Fatalf("read frame: %v", err)
		}
		if h.OpCode == ws.OpClose {
			code, reason := ws.ParseCloseFrameData(payload)
			return int(code), reason
		}
	}
}

func internalCall(t testing.TB, n *node, path string, body, out any) int {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, n.internalURL+path, strings.NewReader(string(b)))
	req.Header.Set(wire.SecretHeader, secret)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		json.NewDecoder(resp.Body).Decode(out)
	}
	return resp.StatusCode
}

func deliver(t testing.TB, n *node, id string, data string, uids ...string) wire.DeliverResponse {
	t.Helper()
	var resp wire.DeliverResponse
	req := wire.DeliverRequest{Message: wire.Message{ID: id, Data: json.RawMessage(data), TS: time.Now().UnixMilli()}, UIDs: uids}
	if status := internalCall(t, n, wire.PathDeliver, req, &resp); status != 200 {
		t.Fatalf("deliver: HTTP %d", status)
	}
	return resp
}

func routeStore(t testing.TB, r *testenv.Redis) *routes.Store {
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	t.Cleanup(func() { rdb.Close() })
	return routes.NewStore(rdb)
}

func lookup(t testing.TB, r *testenv.Redis, uid string) []routes.Route {
	t.Helper()
	got, err := routeStore(t, r).Lookup(context.Background(), []string{uid})
	if err != nil {
		t.Fatal(err)
	}
	return got[uid]
}

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

// bufferedConn reads what the handshake left buffered before reading the socket.
type bufferedConn struct {
	net.Conn
	r io.Reader
}

func (b bufferedConn) Read(p []byte) (int, error) { return b.r.Read(p) }

func decodeJSON(t testing.TB, r io.Reader, v any) {
	t.Helper()
	if err := json.NewDecoder(r).Decode(v); err != nil {
		t.Fatal(err)
	}
}
