package testenv

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// RedisClusterNodeTimeout is the cluster-node-timeout of a RedisCluster. A master that does not
// answer for this long is failed over to a replica, which takes this plus an election of about a
// second. Redis's default of 15 s would make every fault test wait that long; 2 s is still far above
// what a loopback ping takes, even on a busy machine.
const RedisClusterNodeTimeout = 2 * time.Second

// redisClusterSlots is how many hash slots a Redis Cluster divides the keys into.
const redisClusterSlots = 16384

// RedisCluster is a private Redis Cluster: masters that share the hash slots, each with its
// replicas, every node a redis-server without persistence on loopback ports.
//
// It runs with cluster-require-full-coverage no, as Herald's users do: while the slots of a failed
// master with no replica are down, the other masters keep serving theirs. A node that is stopped and
// restarted keeps its directory and nodes.conf, so it rejoins the cluster, as a replica if its
// slots were failed over meanwhile. A master restarted before its replica took over comes back
// empty and keeps its slots: without persistence its data is lost, as it would be in production.
type RedisCluster struct {
	// Nodes are every node, in start order. redis-cli made the first ones masters, but failovers
	// change roles: ask MasterOf or RedisNode.Role.
	Nodes []*RedisNode
}

// RedisNode is one redis-server of a RedisCluster.
type RedisNode struct {
	Addr string // 127.0.0.1:port

	srv server
}

// StartRedisCluster starts masters*(1+replicasPerMaster) cluster-enabled redis-servers on free
// loopback ports, each in its own subdirectory of dir with its nodes.conf and redis.log, joins them
// with redis-cli --cluster create and waits until the cluster is healthy (see WaitHealthy). Redis
// Cluster needs at least 3 masters. ctx bounds only the start; the nodes run until Stop.
func StartRedisCluster(ctx context.Context, dir string, masters, replicasPerMaster int) (*RedisCluster, error) {
	if masters < 3 || replicasPerMaster < 0 {
		return nil, fmt.Errorf("redis cluster: %d masters with %d replicas each: Redis Cluster needs at least 3 masters", masters, replicasPerMaster)
	}
	server, err := findProgram("redis-server", "redis-server")
	if err != nil {
		return nil, err
	}
	cli, err := findProgram("redis-cli", "redis-tools")
	if err != nil {
		return nil, err
	}
	if dir, err = prepareDir(dir); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*readyTimeout)
	defer cancel()

	rc := &RedisCluster{Nodes: make([]*RedisNode, masters*(1+replicasPerMaster))}
	for i := range rc.Nodes {
		rc.Nodes[i] = &RedisNode{}
	}
	err = inParallel(len(rc.Nodes), func(i int) error {
		return rc.Nodes[i].startFirst(ctx, server, filepath.Join(dir, fmt.Sprintf("node-%d", i+1)))
	})
	if err != nil {
		_ = rc.Stop()
		return nil, fmt.Errorf("redis cluster: %w", err)
	}

	// redis-cli makes the first masters nodes masters and spreads the others over them as replicas
	// (it warns that they share a host, which is the point here).
	args := append([]string{"--cluster", "create"}, rc.Addrs()...)
	args = append(args, "--cluster-replicas", strconv.Itoa(replicasPerMaster), "--cluster-yes")
	if out, err := exec.CommandContext(ctx, cli, args...).CombinedOutput(); err != nil {
		_ = rc.Stop()
		return nil, fmt.Errorf("redis cluster: redis-cli --cluster create: %v\n%s", err, out)
	}
	if err := rc.WaitHealthy(ctx); err != nil {
		_ = rc.Stop()
		return nil, fmt.Errorf("redis cluster: %w", err)
	}
	return rc, nil
}

// startFirst starts the node on a fresh port. The cluster bus needs a second port; it is chosen
// here, instead of Redis's default of the client port plus 10000, because that may be above 65535
// or taken. A restart reuses both, since the other nodes know the node by them.
func (n *RedisNode) startFirst(ctx context.Context, bin, dir string) error {
	dir, err := prepareDir(dir)
	if err != nil {
		return err
	}
	var busPort, busFor int // under n.srv.mu, which is held around every call of start
	n.srv.start = func(ctx context.Context, port int) (*process, error) {
		if port != busFor {
			p, err := freePort()
			if err != nil {
				return nil, err
			}
			busPort, busFor = p, port
		}
		c := redisCommand(bin, dir, port,
			"--cluster-port", strconv.Itoa(busPort),
			"--cluster-enabled", "yes",
			"--cluster-config-file", "nodes.conf", // in --dir
			"--cluster-node-timeout", strconv.FormatInt(RedisClusterNodeTimeout.Milliseconds(), 10),
			"--cluster-require-full-coverage", "no",
			// A replica's full sync otherwise waits 5 s for other replicas to share it.
			"--repl-diskless-sync-delay", "0",
			// Stop is a fault, like a crash: no waiting for lagging replicas first.
			"--shutdown-on-sigterm", "now",
		)
		return launch(ctx, c, func(ctx context.Context, p *process) error {
			return pingRedis(ctx, loopback(port), p.pid())
		})
	}
	if err := n.srv.startFirst(ctx); err != nil {
		return err
	}
	n.Addr = loopback(n.srv.port)
	return nil
}

// Addrs lists every node's address, for seeding a cluster client: any running node tells a client
// the whole layout.
func (rc *RedisCluster) Addrs() []string {
	addrs := make([]string, len(rc.Nodes))
	for i, n := range rc.Nodes {
		addrs[i] = n.Addr
	}
	return addrs
}

// Stop stops every node and waits for their processes to exit. It may be called more than once.
func (rc *RedisCluster) Stop() error {
	return inParallel(len(rc.Nodes), func(i int) error { return rc.Nodes[i].Stop() })
}

// Stop ends the node at once, without waiting for its replicas, and waits for its process to exit.
// The other nodes see it fail after RedisClusterNodeTimeout. It may be called more than once.
func (n *RedisNode) Stop() error { return n.srv.stop() }

// Restart stops the node if it runs and starts it again on the same ports and directory. It returns
// once the node answers; WaitHealthy waits until the cluster agrees on it again.
func (n *RedisNode) Restart(ctx context.Context) error { return n.srv.restart(ctx) }

// PID is the node's process id (0 while stopped).
func (n *RedisNode) PID() int { return n.srv.pid() }

// Role is "master" or "replica", as the node itself says; a stopped node answers an error.
func (n *RedisNode) Role(ctx context.Context) (string, error) {
	c := probeClient(n.Addr)
	defer c.Close()
	role, err := nodeRole(ctx, c)
	if err != nil {
		return "", fmt.Errorf("role of %s: %w", n.Addr, err)
	}
	return role, nil
}

func nodeRole(ctx context.Context, c *redis.Client) (string, error) {
	v, err := c.Do(ctx, "ROLE").Slice()
	if err != nil {
		return "", err
	}
	if len(v) == 0 {
		return "", errors.New("empty ROLE reply")
	}
	switch v[0] {
	case "master":
		return "master", nil
	case "slave":
		return "replica", nil
	}
	return "", fmt.Errorf("ROLE answered %v", v[0])
}

// probeClient is a one-connection client that fails fast, for checking one node.
func probeClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{
		Addr:            addr,
		Protocol:        2, // skips the HELLO negotiation
		DisableIdentity: true,
		MaxRetries:      -1,
		PoolSize:        1,
		DialTimeout:     time.Second,
	})
}

// KeySlot is the hash slot of key, as Redis Cluster computes it: CRC16 of the key, or of its hash
// tag (the part between the first { and the next }, when not empty), modulo 16384.
func KeySlot(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	return int(crc16(key)) % redisClusterSlots
}

// crc16 is CRC-16/XMODEM (polynomial 0x1021, initial value 0), the checksum Redis Cluster uses.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc ^= uint16(s[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return crc
}

// MasterOf returns the node that is master of key's slot now.
func (rc *RedisCluster) MasterOf(ctx context.Context, key string) (*RedisNode, error) {
	return rc.MasterOfSlot(ctx, KeySlot(key))
}

// MasterOfSlot returns the node that is master of slot now: among the running nodes that say they
// are a master serving it, the one with the newest configuration epoch. (A master restarted after
// its slots were failed over claims them with its old epoch until the cluster tells it otherwise.)
// It fails when no running node serves the slot, as while a master without replicas is down.
func (rc *RedisCluster) MasterOfSlot(ctx context.Context, slot int) (*RedisNode, error) {
	var (
		best      *RedisNode
		bestEpoch int64 = -1
		errs      []error
	)
	for _, n := range rc.Nodes {
		if n.PID() == 0 {
			continue
		}
		self, err := n.self(ctx)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if self.master && self.serves(slot) && self.epoch > bestEpoch {
			best, bestEpoch = n, self.epoch
		}
	}
	if best == nil {
		return nil, fmt.Errorf("slot %d has no running master: %w", slot, errors.Join(errs...))
	}
	return best, nil
}

// selfView is what a node says about itself in CLUSTER NODES.
type selfView struct {
	master bool
	epoch  int64
	slots  [][2]int // inclusive ranges
}

func (v selfView) serves(slot int) bool {
	for _, r := range v.slots {
		if r[0] <= slot && slot <= r[1] {
			return true
		}
	}
	return false
}

func (n *RedisNode) self(ctx context.Context) (selfView, error) {
	c := probeClient(n.Addr)
	defer c.Close()
	out, err := c.ClusterNodes(ctx).Result()
	if err != nil {
		return selfView{}, fmt.Errorf("cluster nodes of %s: %w", n.Addr, err)
	}
	for line := range strings.Lines(out) {
		// <id> <ip:port@cport> <flags> <master> <ping-sent> <pong-recv> <config-epoch> <link-state> <slot>...
		f := strings.Fields(line)
		if len(f) < 8 || !slices.Contains(strings.Split(f[2], ","), "myself") {
			continue
		}
		v := selfView{master: slices.Contains(strings.Split(f[2], ","), "master")}
		if v.epoch, err = strconv.ParseInt(f[6], 10, 64); err != nil {
			return v, fmt.Errorf("cluster nodes of %s: config epoch %q", n.Addr, f[6])
		}
		for _, s := range f[8:] {
			if strings.HasPrefix(s, "[") {
				continue // a slot being migrated or imported
			}
			lo, hi, _ := strings.Cut(s, "-")
			if hi == "" {
				hi = lo
			}
			a, err1 := strconv.Atoi(lo)
			b, err2 := strconv.Atoi(hi)
			if err1 != nil || err2 != nil {
				return v, fmt.Errorf("cluster nodes of %s: slot range %q", n.Addr, s)
			}
			v.slots = append(v.slots, [2]int{a, b})
		}
		return v, nil
	}
	return selfView{}, fmt.Errorf("cluster nodes of %s: no line for itself", n.Addr)
}

// WaitHealthy waits until the cluster serves every slot again, or ctx ends: every running node
// reports cluster_state:ok, gives the same slot layout covering all 16384 slots, in which every
// master is a running node that says it is a master, and every running replica is in sync with its
// master. After a master is stopped this is when its replica has been promoted; while a master
// without replicas is down it never is, so bound ctx.
func (rc *RedisCluster) WaitHealthy(ctx context.Context) error {
	start := time.Now()
	for {
		err := rc.healthy(ctx)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("redis cluster not healthy after %v: %w", time.Since(start).Round(time.Millisecond), err)
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (rc *RedisCluster) healthy(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	masters := map[string]bool{} // address → running and says it is a master
	var layout string
	var layoutFrom string
	for _, n := range rc.Nodes {
		if n.PID() == 0 {
			continue
		}
		c := probeClient(n.Addr)
		err := func() error {
			info, err := c.ClusterInfo(ctx).Result()
			if err != nil {
				return err
			}
			if !strings.Contains(info, "cluster_state:ok") {
				return errors.New("cluster_state is not ok")
			}
			role, err := nodeRole(ctx, c)
			if err != nil {
				return err
			}
			if role == "replica" {
				repl, err := c.Info(ctx, "replication").Result()
				if err != nil {
					return err
				}
				if !strings.Contains(repl, "master_link_status:up") {
					return errors.New("replica not in sync with its master")
				}
			} else {
				masters[n.Addr] = true
			}
			slots, err := c.ClusterSlots(ctx).Result()
			if err != nil {
				return err
			}
			l, err := slotLayout(slots)
			if err != nil {
				return err
			}
			if layout == "" {
				layout, layoutFrom = l, n.Addr
			} else if l != layout {
				return fmt.Errorf("slot layout differs from %s's", layoutFrom)
			}
			return nil
		}()
		c.Close()
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Addr, err)
		}
	}
	if layout == "" {
		return errors.New("no node is running")
	}
	for r := range strings.Lines(layout) {
		_, addr, _ := strings.Cut(strings.TrimSpace(r), " ")
		if !masters[addr] {
			return fmt.Errorf("slots %s: the master is not a running master", strings.TrimSpace(r))
		}
	}
	return nil
}

// slotLayout writes CLUSTER SLOTS as sorted "first-last master" lines, checking that they cover
// every slot once.
func slotLayout(slots []redis.ClusterSlot) (string, error) {
	slices.SortFunc(slots, func(a, b redis.ClusterSlot) int { return a.Start - b.Start })
	var b strings.Builder
	next := 0
	for _, s := range slots {
		if s.Start != next || len(s.Nodes) == 0 {
			return "", fmt.Errorf("slot %d not covered once", next)
		}
		fmt.Fprintf(&b, "%d-%d %s\n", s.Start, s.End, s.Nodes[0].Addr)
		next = s.End + 1
	}
	if next != redisClusterSlots {
		return "", fmt.Errorf("slots %d-%d not covered", next, redisClusterSlots-1)
	}
	return b.String(), nil
}

// NewRedisCluster starts a Redis Cluster in a temporary directory for the test and stops it when the
// test ends.
func NewRedisCluster(t testing.TB, masters, replicasPerMaster int) *RedisCluster {
	t.Helper()
	rc, err := StartRedisCluster(context.Background(), t.TempDir(), masters, replicasPerMaster)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := rc.Stop(); err != nil {
			t.Error(err)
		}
	})
	return rc
}
