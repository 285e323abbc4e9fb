package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
)

// Group starts servers under one directory and stops them together: one Group serves a test binary
// (see Main) or a local stack.
type Group struct {
	ctx context.Context
	dir string

	// mu guards stops and n.
	mu    sync.Mutex
	stops []func() error
	n     int
}

// NewGroup returns a Group whose servers keep their data in subdirectories of dir.
func NewGroup(ctx context.Context, dir string) *Group {
	return &Group{ctx: ctx, dir: dir}
}

func (g *Group) subdir(kind string) string {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n++
	return filepath.Join(g.dir, fmt.Sprintf("%s-%d", kind, g.n))
}

func (g *Group) track(stop func() error) {
	g.mu.Lock()
	g.stops = append(g.stops, stop)
	g.mu.Unlock()
}

// Redis starts a Redis server in the group.
func (g *Group) Redis() (*Redis, error) {
	r, err := StartRedis(g.ctx, g.subdir("redis"))
	if err == nil {
		g.track(r.Stop)
	}
	return r, err
}

// ZooKeeper starts a ZooKeeper server in the group.
func (g *Group) ZooKeeper() (*ZooKeeper, error) {
	z, err := StartZooKeeper(g.ctx, g.subdir("zookeeper"))
	if err == nil {
		g.track(z.Stop)
	}
	return z, err
}

// MySQL starts a MariaDB server in the group.
func (g *Group) MySQL() (*MySQL, error) {
	m, err := StartMySQL(g.ctx, g.subdir("mysql"))
	if err == nil {
		g.track(m.Stop)
	}
	return m, err
}

// Kafka starts an in-process Kafka-protocol broker in the group.
func (g *Group) Kafka(topics ...string) (*Kafka, error) {
	k, err := StartKafka(g.ctx, topics...)
	if err == nil {
		g.track(k.Stop)
	}
	return k, err
}

// RedisCluster starts a Redis Cluster of masters, each with replicasPerMaster replicas, in the group.
func (g *Group) RedisCluster(masters, replicasPerMaster int) (*RedisCluster, error) {
	rc, err := StartRedisCluster(g.ctx, g.subdir("redis-cluster"), masters, replicasPerMaster)
	if err == nil {
		g.track(rc.Stop)
	}
	return rc, err
}

// ZooKeeperEnsemble starts an ensemble of three ZooKeeper servers in the group.
func (g *Group) ZooKeeperEnsemble() (*ZooKeeperEnsemble, error) {
	e, err := StartZooKeeperEnsemble(g.ctx, g.subdir("zookeeper-ensemble"))
	if err == nil {
		g.track(e.Stop)
	}
	return e, err
}

// KafkaCluster starts an in-process Kafka-protocol cluster of several brokers in the group.
func (g *Group) KafkaCluster(brokers int, topics ...string) (*Kafka, error) {
	k, err := StartKafkaCluster(g.ctx, brokers, topics...)
	if err == nil {
		g.track(k.Stop)
	}
	return k, err
}

// Stop stops every server of the group, newest first.
func (g *Group) Stop() error {
	g.mu.Lock()
	stops := g.stops
	g.stops = nil
	g.mu.Unlock()
	var errs []error
	for i := len(stops) - 1; i >= 0; i-- {
		errs = append(errs, stops[i]())
	}
	return errors.Join(errs...)
}

// Main runs a package's tests against servers started once for the whole package by start, then stops
// them and removes their data, also when the run is interrupted (SIGINT, SIGTERM). Call it from
// TestMain; a server that cannot start fails the run with the reason (a missing binary names its
// Debian package).
func Main(m *testing.M, start func(g *Group) error) {
	os.Exit(runMain(m, start))
}

func runMain(m *testing.M, start func(g *Group) error) int {
	dir, err := os.MkdirTemp("", "herald-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "testenv:", err)
		return 1
	}
	g := NewGroup(context.Background(), dir)
	var once sync.Once
	cleanup := func() {
		once.Do(func() {
			if err := g.Stop(); err != nil {
				fmt.Fprintln(os.Stderr, "testenv: stop:", err)
			}
			os.RemoveAll(dir)
		})
	}
	defer cleanup()

	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sigs)
	go func() {
		if _, ok := <-sigs; ok {
			cleanup()
			os.Exit(130)
		}
	}()

	if err := start(g); err != nil {
		fmt.Fprintln(os.Stderr, "testenv: starting servers:", err)
		return 1
	}
	return m.Run()
}
