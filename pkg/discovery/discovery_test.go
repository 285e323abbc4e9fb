package discovery

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/testenv"
)

var zkServer *testenv.ZooKeeper

func TestMain(m *testing.M) {
	testenv.Main(m, func(g *testenv.Group) (err error) {
		zkServer, err = g.ZooKeeper()
		return err
	})
}

const sessionTimeout = 2 * time.Second

func dial(t testing.TB, addr string) *Client {
	t.Helper()
	c, err := Dial(addr, sessionTimeout, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c
}

// watcher records what Watch reports.
type watcher struct {
	mu    sync.Mutex
	nodes []Node
	seen  chan struct{}
}

func watch(t testing.TB, c *Client) *watcher {
	w := &watcher{seen: make(chan struct{}, 100)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		c.Watch(ctx, func(nodes []Node) {
			w.mu.Lock()
			w.nodes = nodes
			w.mu.Unlock()
			w.seen <- struct{}{}
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return w
}

// waitFor waits until the watched list satisfies ok.
func (w *watcher) waitFor(t testing.TB, what string, ok func([]Node) bool) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		w.mu.Lock()
		nodes := w.nodes
		w.mu.Unlock()
		if nodes != nil && ok(nodes) {
			return
		}
		select {
		case <-w.seen:
		case <-deadline:
			t.Fatalf("timed out waiting for %s; last list %+v", what, nodes)
		}
	}
}

func has(id string, draining bool) func([]Node) bool {
	return func(nodes []Node) bool {
		for _, n := range nodes {
			if n.ID == id {
				return n.Draining == draining
			}
		}
		return false
	}
}

func hasNot(id string) func([]Node) bool {
	return func(nodes []Node) bool { return !has(id, false)(nodes) && !has(id, true)(nodes) }
}

func TestRegisterWatchDrainDeregister(t *testing.T) {
	ctx := context.Background()
	w := watch(t, dial(t, zkServer.Addr))
	node := Node{ID: "ps-a", WSURL: "ws://127.0.0.1:1/ws", InternalURL: "http://127.0.0.1:2", Weight: 1, StartedAt: time.Now().UTC().Truncate(time.Second), Encodings: []string{"application/x-protobuf"}}

	reg, err := dial(t, zkServer.Addr).Register(ctx, node)
	if err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "registration", has("ps-a", false))
	w.mu.Lock()
	got := w.nodes[0]
	w.mu.Unlock()
	if !got.Equal(node) {
		t.Fatalf("watched %+v, want %+v", got, node)
	}

	if got, ok, err := dial(t, zkServer.Addr).Get("ps-a"); err != nil || !ok || !got.Equal(node) {
		t.Fatalf("Get(ps-a) = %+v %v %v", got, ok, err)
	}
	if _, ok, err := dial(t, zkServer.Addr).Get("ps-none"); err != nil || ok {
		t.Fatalf("Get(ps-none) = %v %v, want not found", ok, err)
	}

	if err := reg.SetDraining(true); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "draining", has("ps-a", true))

	if err := reg.Deregister(); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "deregistration", hasNot("ps-a"))
}

func TestClosedSessionRemovesNode(t *testing.T) {
	w := watch(t, dial(t, zkServer.Addr))
	c, err := Dial(zkServer.Addr, sessionTimeout, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Register(context.Background(), Node{ID: "ps-closed"}); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "registration", has("ps-closed", false))
	c.Close()
	w.waitFor(t, "removal", hasNot("ps-closed"))
}

func TestReRegisterAfterSessionExpiry(t *testing.T) {
	proxy := newProxy(t, zkServer.Addr)
	w := watch(t, dial(t, zkServer.Addr))
	c := dial(t, proxy.addr())
	if _, err := c.Register(context.Background(), Node{ID: "ps-expiring"}); err != nil {
		t.Fatal(err)
	}
	w.waitFor(t, "registration", has("ps-expiring", false))

	// Cut the registering client off long enough for the server to expire its session.
	proxy.pause()
	w.waitFor(t, "expiry", hasNot("ps-expiring"))
	proxy.resume()
	w.waitFor(t, "re-registration", has("ps-expiring", false))
}

func TestWatchEmptiesWhenZooKeeperIsGone(t *testing.T) {
	if raceDetector {
		// go-zookeeper/zk reads its last zxid while resending watches on a new connection as the old
		// connection's receive loop may still write it (upstream go-zookeeper/zk#35, unfixed); this
		// test's cut-and-reconnect hits that now and then. make test runs it again without -race.
		t.Skip("the client library's own race on reconnect; run without -race")
	}
	proxy := newProxy(t, zkServer.Addr)
	if _, err := dial(t, zkServer.Addr).Register(context.Background(), Node{ID: "ps-seen"}); err != nil {
		t.Fatal(err)
	}
	c := dial(t, proxy.addr())
	w := watch(t, c)
	w.waitFor(t, "registration", has("ps-seen", false))

	proxy.pause()
	w.waitFor(t, "an empty list", func(n []Node) bool { return len(n) == 0 })
	if err := c.Check(context.Background()); err == nil {
		t.Fatal("Check passes without a session")
	}
	proxy.resume()
	w.waitFor(t, "the list back", has("ps-seen", false))
	if err := c.Check(context.Background()); err != nil {
		t.Fatalf("Check after reconnect: %v", err)
	}
}

func TestRegisterRejectsBadID(t *testing.T) {
	if _, err := dial(t, zkServer.Addr).Register(context.Background(), Node{ID: "a/b"}); err == nil {
		t.Fatal("id with a slash accepted")
	}
}

// proxy forwards TCP to a ZooKeeper server and can cut every connection, to play a network partition.
type proxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	paused bool
	conns  []net.Conn
}

func newProxy(t testing.TB, target string) *proxy {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &proxy{ln: ln, target: target}
	t.Cleanup(func() { ln.Close(); p.pause() })
	go p.serve()
	return p
}

func (p *proxy) addr() string { return p.ln.Addr().String() }

func (p *proxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		if p.paused {
			p.mu.Unlock()
			in.Close()
			continue
		}
		out, err := net.Dial("tcp", p.target)
		if err != nil {
			p.mu.Unlock()
			in.Close()
			continue
		}
		p.conns = append(p.conns, in, out)
		p.mu.Unlock()
		go func() { io.Copy(out, in); out.Close() }()
		go func() { io.Copy(in, out); in.Close() }()
	}
}

func (p *proxy) pause() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = true
	for _, c := range p.conns {
		c.Close()
	}
	p.conns = nil
}

func (p *proxy) resume() {
	p.mu.Lock()
	p.paused = false
	p.mu.Unlock()
}
