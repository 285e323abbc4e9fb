package testenv

import (
	"bufio"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-zookeeper/zk"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// stopAndRestart checks that Stop ends the process and closes the port, that a second Stop is
// harmless, and that Restart brings the server back.
func stopAndRestart(t *testing.T, addr string, srv *server, stop func() error, restart func(context.Context) error) {
	t.Helper()
	pid := srv.running().pid()
	if err := stop(); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := stop(); err != nil {
		t.Fatalf("second Stop: %v", err)
	}
	if alive(pid) {
		t.Fatalf("process %d still exists after Stop", pid)
	}
	assertUnreachable(t, addr)
	if err := restart(testContext(t)); err != nil {
		t.Fatalf("Restart: %v", err)
	}
	if got := srv.running(); got == nil || got.pid() == pid {
		t.Fatalf("Restart did not start a new process")
	}
}

// alive treats a zombie as dead: it has exited, and reaping it is up to its parent (init).
func alive(pid int) bool {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the parenthesised command name: "pid (comm) S ...".
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || !strings.HasPrefix(s[i+1:], " Z")
}

func assertUnreachable(t *testing.T, addr string) {
	t.Helper()
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Fatalf("%s still accepts connections after Stop", addr)
	}
}

func TestRedis(t *testing.T) {
	t.Parallel()
	r := NewRedis(t)
	ctx := testContext(t)
	c := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer c.Close()
	setGet := func() {
		t.Helper()
		if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
			t.Fatal(err)
		}
		if got, err := c.Get(ctx, "k").Result(); err != nil || got != "v" {
			t.Fatalf("GET k = %q, %v", got, err)
		}
	}
	setGet()
	stopAndRestart(t, r.Addr, &r.srv, r.Stop, r.Restart)
	if err := c.Get(ctx, "k").Err(); !errors.Is(err, redis.Nil) {
		t.Fatalf("after Restart GET k: %v, want redis.Nil (no persistence)", err)
	}
	setGet()
	if err := r.Restart(ctx); err != nil {
		t.Fatalf("Restart while running: %v", err)
	}
	setGet()
}

func TestZooKeeper(t *testing.T) {
	t.Parallel()
	z := NewZooKeeper(t)
	connect := func() *zk.Conn {
		t.Helper()
		c, _, err := zk.Connect([]string{z.Addr}, 2*time.Second, zk.WithLogInfo(false))
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	c := connect()
	if _, err := c.Create("/herald", []byte("hello"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}
	if got, _, err := c.Get("/herald"); err != nil || string(got) != "hello" {
		t.Fatalf("get /herald = %q, %v", got, err)
	}
	c.Close()

	stopAndRestart(t, z.Addr, &z.srv, z.Stop, z.Restart)
	c = connect()
	defer c.Close()
	if got, _, err := c.Get("/herald"); err != nil || string(got) != "hello" {
		t.Fatalf("after Restart get /herald = %q, %v (data dir should survive)", got, err)
	}
}

func TestMySQL(t *testing.T) {
	t.Parallel()
	m := NewMySQL(t)
	if want := "root@tcp(" + m.Addr + ")/herald?parseTime=true"; m.DSN != want {
		t.Errorf("DSN = %q, want %q", m.DSN, want)
	}
	ctx := testContext(t)
	db, err := sql.Open("mysql", m.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range []string{
		"CREATE TABLE t (id INT PRIMARY KEY, at DATETIME(3) NOT NULL)",
		"INSERT INTO t VALUES (1, NOW(3))",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	var at time.Time // parseTime=true scans DATETIME into time.Time
	if err := db.QueryRowContext(ctx, "SELECT at FROM t WHERE id = 1").Scan(&at); err != nil {
		t.Fatal(err)
	}

	stopAndRestart(t, m.Addr, &m.srv, m.Stop, m.Restart)
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM t").Scan(&n); err != nil || n != 1 {
		t.Fatalf("after Restart: %d rows, %v (data dir should survive)", n, err)
	}
}

// TestMySQLRootOverTCPRepair covers a data directory whose accounts do not let root in over TCP:
// the start must add root@127.0.0.1 through the socket.
func TestMySQLRootOverTCPRepair(t *testing.T) {
	t.Parallel()
	m := NewMySQL(t)
	ctx := testContext(t)
	db, err := sql.Open("mysql", m.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, "DROP USER 'root'@'127.0.0.1'"); err != nil {
		t.Fatal(err)
	}
	db.SetMaxIdleConns(0)
	if err := db.PingContext(ctx); err == nil {
		t.Fatal("root can still log in over TCP after DROP USER")
	}
	if err := m.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := db.PingContext(ctx); err != nil {
		t.Fatalf("after Restart: %v", err)
	}
}

// produceFetch checks that topic has KafkaPartitions partitions, each replicated on replicas brokers,
// and that a record produced to it can be fetched.
func produceFetch(t *testing.T, k *Kafka, topic string, replicas int) {
	t.Helper()
	ctx := testContext(t)
	c, err := kgo.NewClient(
		kgo.SeedBrokers(k.Brokers...),
		kgo.ConsumeTopics(topic),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
	)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()

	req := kmsg.NewPtrMetadataRequest()
	mt := kmsg.NewMetadataRequestTopic()
	mt.Topic = kmsg.StringPtr(topic)
	req.Topics = append(req.Topics, mt)
	resp, err := req.RequestWith(ctx, c)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(resp.Brokers); n != len(k.Brokers) {
		t.Fatalf("metadata lists %d brokers, want %d", n, len(k.Brokers))
	}
	if n := len(resp.Topics[0].Partitions); n != KafkaPartitions {
		t.Fatalf("topic %s has %d partitions, want %d", topic, n, KafkaPartitions)
	}
	for _, p := range resp.Topics[0].Partitions {
		if len(p.Replicas) != replicas {
			t.Fatalf("partition %d has replicas %v, want %d", p.Partition, p.Replicas, replicas)
		}
	}

	if err := c.ProduceSync(ctx, &kgo.Record{Topic: topic, Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for {
		fs := c.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			t.Fatalf("no record fetched: %v", err)
		}
		for _, e := range fs.Errors() {
			t.Logf("fetch error (retried): %v", e.Err)
		}
		if recs := fs.Records(); len(recs) > 0 {
			if string(recs[0].Value) != "v" {
				t.Fatalf("fetched %q, want v", recs[0].Value)
			}
			return
		}
	}
}

func TestKafka(t *testing.T) {
	t.Parallel()
	k := NewKafka(t, "events")
	produceFetch(t, k, "events", 1)

	if err := k.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := k.Stop(); err != nil {
		t.Fatal(err)
	}
	if k.Running() {
		t.Fatal("Running after Stop")
	}
	assertUnreachable(t, k.Brokers[0])
	if err := k.Restart(testContext(t)); err != nil {
		t.Fatal(err)
	}
	produceFetch(t, k, "events", 1)
	if err := k.Restart(testContext(t)); err != nil {
		t.Fatalf("Restart while running: %v", err)
	}
	produceFetch(t, k, "events", 1)
}

func TestKafkaCluster(t *testing.T) {
	t.Parallel()
	k := NewKafkaCluster(t, 3, "events")
	if len(k.Brokers) != 3 || k.Brokers[0] == k.Brokers[1] || k.Brokers[1] == k.Brokers[2] || k.Brokers[0] == k.Brokers[2] {
		t.Fatalf("Brokers = %v, want three addresses", k.Brokers)
	}
	produceFetch(t, k, "events", 3)
	if err := k.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, b := range k.Brokers {
		assertUnreachable(t, b)
	}
	if err := k.Restart(testContext(t)); err != nil {
		t.Fatal(err)
	}
	produceFetch(t, k, "events", 3)
}

func TestKeySlot(t *testing.T) {
	tests := []struct {
		key  string
		want int
	}{
		{"123456789", 0x31c3 % 16384}, // CRC-16/XMODEM's check value
		{"foo", 12182},
		{"{user1000}.following", 3443}, // the slot of user1000
		{"{}x", 10595},                 // the whole key: an empty tag is no tag
		{"a{}b{c}", 7353},              // the whole key: only the first { counts, and its tag is empty
		{"herald:route:{u1}", 4574},    // the slot of u1
	}
	for _, tt := range tests {
		if got := KeySlot(tt.key); got != tt.want {
			t.Errorf("KeySlot(%q) = %d, want %d", tt.key, got, tt.want)
		}
	}
}

func TestRedisCluster(t *testing.T) {
	t.Parallel()
	rc := NewRedisCluster(t, 3, 1)
	ctx := testContext(t)
	addrs := rc.Addrs()
	if len(addrs) != 6 || len(map[string]bool{addrs[0]: true, addrs[1]: true, addrs[2]: true, addrs[3]: true, addrs[4]: true, addrs[5]: true}) != 6 {
		t.Fatalf("Addrs = %v, want six addresses", addrs)
	}
	roles := map[string]int{}
	for _, n := range rc.Nodes {
		role, err := n.Role(ctx)
		if err != nil {
			t.Fatal(err)
		}
		roles[role]++
		if n.PID() == 0 {
			t.Fatalf("node %s has no pid", n.Addr)
		}
	}
	if roles["master"] != 3 || roles["replica"] != 3 {
		t.Fatalf("roles %v, want 3 masters and 3 replicas", roles)
	}

	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer c.Close()
	// One key on each master, found by MasterOf and checked against the cluster's own slot.
	keys := map[*RedisNode]string{}
	for i := 0; len(keys) < 3 && i < 100; i++ {
		key := fmt.Sprintf("key-%d", i)
		if slot, err := c.ClusterKeySlot(ctx, key).Result(); err != nil || int(slot) != KeySlot(key) {
			t.Fatalf("CLUSTER KEYSLOT %s = %d, %v; KeySlot says %d", key, slot, err, KeySlot(key))
		}
		m, err := rc.MasterOf(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := keys[m]; !ok {
			keys[m] = key
		}
	}
	if len(keys) != 3 {
		t.Fatalf("keys reach %d masters, want 3", len(keys))
	}
	for _, key := range keys {
		if err := c.Set(ctx, key, "v-"+key, 0).Err(); err != nil {
			t.Fatalf("SET %s: %v", key, err)
		}
		if got, err := c.Get(ctx, key).Result(); err != nil || got != "v-"+key {
			t.Fatalf("GET %s = %q, %v", key, got, err)
		}
	}

	// Stop one master once its replica has the key: the replica takes over and serves it.
	var old *RedisNode
	var key string
	for old, key = range keys {
		break
	}
	direct := redis.NewClient(&redis.Options{Addr: old.Addr})
	if n, err := direct.Do(ctx, "WAIT", 1, 5000).Int(); err != nil || n != 1 {
		t.Fatalf("WAIT for the replica of %s: %d, %v", old.Addr, n, err)
	}
	direct.Close()
	start := time.Now()
	if err := old.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := rc.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	t.Logf("replica promoted %v after the master stopped", time.Since(start).Round(time.Millisecond))
	promoted, err := rc.MasterOf(ctx, key)
	if err != nil || promoted == old {
		t.Fatalf("MasterOf(%s) after failover = %v, %v; want a node other than %s", key, promoted, err, old.Addr)
	}
	Eventually(t, "GET "+key+" after failover", func() error {
		// A dead master answers no MOVED, and go-redis reads the layout again only on MOVED or
		// once a minute by default, so the client is told to.
		c.ReloadState(ctx)
		got, err := c.Get(ctx, key).Result()
		if err == nil && got != "v-"+key {
			return fmt.Errorf("GET %s = %q", key, got)
		}
		return err
	})

	// The old master comes back as a replica of the promoted one.
	if err := old.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if err := rc.WaitHealthy(ctx); err != nil {
		t.Fatal(err)
	}
	if role, err := old.Role(ctx); err != nil || role != "replica" {
		t.Fatalf("restarted master's role = %q, %v; want replica", role, err)
	}
	if m, err := rc.MasterOf(ctx, key); err != nil || m != promoted {
		t.Fatalf("MasterOf(%s) after the restart = %v, %v; want %s", key, m, err, promoted.Addr)
	}
}

func TestZooKeeperEnsemble(t *testing.T) {
	t.Parallel()
	e := NewZooKeeperEnsemble(t)
	ctx := testContext(t)
	if addrs := strings.Split(e.Connect, ","); len(addrs) != 3 || len(e.Servers) != 3 {
		t.Fatalf("Connect = %q with %d servers, want three", e.Connect, len(e.Servers))
	}
	var leader *ZooKeeperServer
	for _, s := range e.Servers {
		mode, err := s.Mode(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if mode == "leader" {
			leader = s
		}
	}
	if leader == nil {
		t.Fatal("no leader")
	}
	c, _, err := zk.Connect(strings.Split(e.Connect, ","), 2*time.Second, zk.WithLogInfo(false))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Create("/herald", []byte("hello"), 0, zk.WorldACL(zk.PermAll)); err != nil {
		t.Fatal(err)
	}

	// Without its leader the ensemble elects another and keeps its data.
	if err := leader.Stop(); err != nil {
		t.Fatal(err)
	}
	Eventually(t, "a write with the leader stopped", func() error {
		_, err := c.Create("/after", nil, 0, zk.WorldACL(zk.PermAll))
		if errors.Is(err, zk.ErrNodeExists) {
			return nil
		}
		return err
	})
	if got, _, err := c.Get("/herald"); err != nil || string(got) != "hello" {
		t.Fatalf("get /herald = %q, %v", got, err)
	}

	if err := leader.Restart(ctx); err != nil {
		t.Fatal(err)
	}
	if mode, err := leader.Mode(ctx); err != nil || mode != "follower" {
		t.Fatalf("restarted server's mode = %q, %v; want follower", mode, err)
	}
}

func TestStartAllInParallel(t *testing.T) {
	t.Parallel()
	var (
		wg                     sync.WaitGroup
		r                      *Redis
		z                      *ZooKeeper
		m                      *MySQL
		k                      *Kafka
		rErr, zErr, mErr, kErr error
	)
	ctx := testContext(t)
	wg.Add(4)
	go func() { defer wg.Done(); r, rErr = StartRedis(ctx, t.TempDir()) }()
	go func() { defer wg.Done(); z, zErr = StartZooKeeper(ctx, t.TempDir()) }()
	go func() { defer wg.Done(); m, mErr = StartMySQL(ctx, t.TempDir()) }()
	go func() { defer wg.Done(); k, kErr = StartKafka(ctx, "a", "b") }()
	wg.Wait()
	// Each is checked before it becomes an interface, where a nil *Redis would not be nil.
	if r != nil {
		t.Cleanup(func() { _ = r.Stop() })
	}
	if z != nil {
		t.Cleanup(func() { _ = z.Stop() })
	}
	if m != nil {
		t.Cleanup(func() { _ = m.Stop() })
	}
	if k != nil {
		t.Cleanup(func() { _ = k.Stop() })
	}
	if err := errors.Join(rErr, zErr, mErr, kErr); err != nil {
		t.Fatal(err)
	}
	addrs := map[string]bool{r.Addr: true, z.Addr: true, m.Addr: true, k.Brokers[0]: true}
	if len(addrs) != 4 {
		t.Fatalf("servers share addresses: %v", addrs)
	}
	for a := range addrs {
		c, err := net.DialTimeout("tcp", a, time.Second)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
	}
}

func TestStartFailures(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notReady := func(context.Context, *process) error { return errors.New("no answer") }

	c := command{name: "crasher", path: "/bin/sh", args: []string{"-c", "echo cannot bind; exit 3"}, dir: dir, log: dir + "/crasher.log"}
	_, err := launch(context.Background(), c, notReady)
	if !errors.Is(err, errEarlyExit) || !strings.Contains(err.Error(), "cannot bind") {
		t.Errorf("early exit: err = %v, want errEarlyExit and the log tail", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	c = command{name: "sleeper", path: "/bin/sleep", args: []string{"60"}, dir: dir, log: dir + "/sleeper.log"}
	_, err = launch(ctx, c, notReady)
	if err == nil || !strings.Contains(err.Error(), "sleeper not ready after") || !strings.Contains(err.Error(), "no answer") {
		t.Errorf("deadline: err = %v, want not ready with the probe's error", err)
	}

	// A port that turns out to be taken is given up for a new one, other errors are final.
	var ports []int
	s := server{start: func(_ context.Context, port int) (*process, error) {
		ports = append(ports, port)
		if len(ports) < startAttempts {
			return nil, fmt.Errorf("x: %w", errNotOurs)
		}
		return nil, errors.New("final")
	}}
	if err := s.startFirst(context.Background()); err == nil || err.Error() != "final" || len(ports) != startAttempts {
		t.Errorf("startFirst: err = %v after %d attempts, want final after %d", err, len(ports), startAttempts)
	}
}

func TestMissingError(t *testing.T) {
	_, err := findProgram("herald-no-such-server", "herald-no-such-package")
	var missing *MissingError
	if !errors.As(err, &missing) {
		t.Fatalf("err = %v, want *MissingError", err)
	}
	want := "herald-no-such-server not found: install the Debian package herald-no-such-package (scripts/install-deps.sh)"
	if err.Error() != want {
		t.Fatalf("err = %q, want %q", err, want)
	}
}

// TestNoOrphansWhenKilled kills a test binary that runs servers without letting it stop them, as
// a test timeout or Ctrl-C would, and checks the servers die with it.
func TestNoOrphansWhenKilled(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	ctx := testContext(t)
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperServersThenHang$")
	cmd.Env = append(os.Environ(), "TESTENV_HELPER_DIR="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var pids []int
	sc := bufio.NewScanner(out)
	for len(pids) < 2 && sc.Scan() {
		if f, ok := strings.CutPrefix(sc.Text(), "PID "); ok {
			pid, _ := strconv.Atoi(f)
			pids = append(pids, pid)
		}
	}
	if len(pids) < 2 {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		t.Fatalf("helper did not report its servers: %v", sc.Err())
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for _, pid := range pids {
		for alive(pid) {
			if time.Now().After(deadline) {
				t.Fatalf("server process %d outlived the killed test binary", pid)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestHelperServersThenHang is the child of TestNoOrphansWhenKilled.
func TestHelperServersThenHang(t *testing.T) {
	dir := os.Getenv("TESTENV_HELPER_DIR")
	if dir == "" {
		t.Skip("helper process for TestNoOrphansWhenKilled")
	}
	ctx := testContext(t)
	r, err := StartRedis(ctx, dir+"/redis")
	if err != nil {
		t.Fatal(err)
	}
	z, err := StartZooKeeper(ctx, dir+"/zookeeper")
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("PID %d\nPID %d\n", r.srv.running().pid(), z.srv.running().pid())
	select {}
}

// Freeze returns only once the process has stopped, and resume lets it run again.
func TestFreeze(t *testing.T) {
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	resume := Freeze(t, cmd.Process.Pid)
	if n, err := runningThreads(cmd.Process.Pid); err != nil || n != 0 {
		t.Fatalf("after Freeze: %d threads running (%v)", n, err)
	}
	resume()
	Eventually(t, "running again", func() error {
		if n, err := runningThreads(cmd.Process.Pid); err != nil || n == 0 {
			return fmt.Errorf("%d threads running (%v)", n, err)
		}
		return nil
	})
}
