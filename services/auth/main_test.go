package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/account"
	"github.com/heraldpush/herald/pkg/apikey"
	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/mysqldb"
	"github.com/heraldpush/herald/pkg/testenv"
	"github.com/heraldpush/herald/pkg/token"
	"golang.org/x/crypto/bcrypt"
)

// Servers shared by the package's tests; tests that stop a server start their own.
var (
	sharedMySQL *testenv.MySQL
	sharedZK    *testenv.ZooKeeper
)

func TestMain(m *testing.M) {
	testenv.Main(m, func(g *testenv.Group) (err error) {
		if sharedMySQL, err = g.MySQL(); err != nil {
			return err
		}
		sharedZK, err = g.ZooKeeper()
		return err
	})
}

// authServer is one auth process started through run, as main starts it.
type authServer struct {
	url, internalURL string
	pub              []byte // PEM of the signing key's public half
	db               *sql.DB
	accounts         *account.Store
	keys             *apikey.Store
}

type servers struct {
	mysql *testenv.MySQL
	zk    *testenv.ZooKeeper
}

// launchAuth runs auth in the test process until the test ends, and waits until it answers /healthz.
func launchAuth(t *testing.T, s servers, extraEnv map[string]string) *authServer {
	t.Helper()
	if s.mysql == nil {
		s.mysql = sharedMySQL
	}
	if s.zk == nil {
		s.zk = sharedZK
	}
	pub, priv, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	privPEM, err := token.MarshalPrivateKeyPEM(priv)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := token.MarshalPublicKeyPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	a := &authServer{pub: pubPEM}
	listen, internal := freeAddr(t), freeAddr(t)
	a.url, a.internalURL = "http://"+listen, "http://"+internal
	env := map[string]string{
		"HERALD_LISTEN_ADDR":        listen,
		"HERALD_INTERNAL_ADDR":      internal,
		"HERALD_MYSQL_DSN":          s.mysql.DSN,
		"HERALD_ZOOKEEPER":          s.zk.Addr,
		"HERALD_ZK_SESSION_TIMEOUT": "2s",
		"HERALD_JWT_PRIVATE_KEY":    string(privPEM),
		"HERALD_BCRYPT_COST":        fmt.Sprint(bcrypt.MinCost),
		"HERALD_LOG_LEVEL":          "warn",
	}
	for k, v := range extraEnv {
		env[k] = v
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return env[k] }, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("run returned %v after shutdown", err)
			}
		case <-time.After(15 * time.Second):
			t.Error("auth did not shut down within 15s")
		}
	})
	waitHTTP(t, a.internalURL+"/healthz", done)
	return a
}

func startAuth(t *testing.T, s servers, extraEnv map[string]string) *authServer {
	t.Helper()
	a := launchAuth(t, s, extraEnv)
	if s.mysql == nil {
		s.mysql = sharedMySQL
	}
	db, err := mysqldb.Open(context.Background(), s.mysql.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	// auth migrates in the background; the tests' own stores need the tables now.
	if err := mysqldb.Migrate(context.Background(), db, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	a.db = db
	if a.accounts, err = account.NewStore(db, bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	a.keys = apikey.NewStore(db)
	return a
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

func waitHTTP(t testing.TB, url string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-done:
			t.Fatalf("auth exited during start: %v", err)
		default:
		}
		if resp, err := http.Get(url); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("%s not answering 200 after 20s", url)
}

// registerNode registers a push-server znode for the length of the test.
func registerNode(t testing.TB, zk *testenv.ZooKeeper, n discovery.Node) *discovery.Registration {
	t.Helper()
	c, err := discovery.Dial(zk.Addr, 2*time.Second, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reg, err := c.Register(ctx, n)
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func node(id string) discovery.Node {
	return discovery.Node{ID: id, WSURL: "ws://127.0.0.1:1/" + id, InternalURL: "http://127.0.0.1:2/" + id, Weight: 1, StartedAt: time.Now().UTC()}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) errorCode() string {
	var e struct {
		Error struct{ Code, Message string }
	}
	if json.Unmarshal(r.body, &e) != nil {
		return ""
	}
	return e.Error.Code
}

func post(t testing.TB, url, authz string, body any) reply {
	t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case string:
		rd = strings.NewReader(b)
	default:
		js, err := json.Marshal(b)
		if err != nil {
			t.Fatal(err)
		}
		rd = bytes.NewReader(js)
	}
	req, err := http.NewRequest(http.MethodPost, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != "application/json" {
		t.Fatalf("POST %s: Content-Type %q, body %s", url, ct, b)
	}
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

func get(t testing.TB, url string) reply {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return reply{status: resp.StatusCode, header: resp.Header, body: b}
}

// eventually is the package tests' name for testenv.Eventually.
var eventually = testenv.Eventually

func verify(t testing.TB, pubPEM []byte, tok string) token.Claims {
	t.Helper()
	keys, err := token.ParsePublicKeysPEM(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	claims, err := token.NewVerifier(keys...).Verify(tok)
	if err != nil {
		t.Fatalf("token does not verify with the public key: %v", err)
	}
	return claims
}

func decode[T any](t testing.TB, r reply) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}

var errNotYet = errors.New("not yet")
