package main

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/heraldpush/herald/pkg/testenv"
)

// clusterRedisMasters, clusterRedisReplicas, clusterKafkaBrokers are the cluster-shaped stack's
// servers: the smallest of each that survives losing one.
const (
	clusterRedisMasters  = 3
	clusterRedisReplicas = 1
	clusterKafkaBrokers  = 3
)

// infra is the stack's private servers: one of each, or with -cluster the production shape, in which
// zk and redis are nil and zkEnsemble and redisCluster are set.
type infra struct {
	mysql *testenv.MySQL
	kafka *testenv.Kafka

	zk    *testenv.ZooKeeper
	redis *testenv.Redis

	zkEnsemble   *testenv.ZooKeeperEnsemble
	redisCluster *testenv.RedisCluster
}

func startInfra(g *testenv.Group, logger *slog.Logger, cluster bool) (infra, error) {
	var in infra
	var err error
	if cluster {
		if in.zkEnsemble, err = g.ZooKeeperEnsemble(); err != nil {
			return in, fmt.Errorf("zookeeper ensemble: %w", err)
		}
		if in.redisCluster, err = g.RedisCluster(clusterRedisMasters, clusterRedisReplicas); err != nil {
			return in, fmt.Errorf("redis cluster: %w", err)
		}
	} else {
		if in.zk, err = g.ZooKeeper(); err != nil {
			return in, fmt.Errorf("zookeeper: %w", err)
		}
		if in.redis, err = g.Redis(); err != nil {
			return in, fmt.Errorf("redis: %w", err)
		}
	}
	if in.mysql, err = g.MySQL(); err != nil {
		return in, fmt.Errorf("mysql: %w", err)
	}
	brokers := 1
	if cluster {
		brokers = clusterKafkaBrokers
	}
	if in.kafka, err = g.KafkaCluster(brokers, "herald.upstream"); err != nil {
		return in, fmt.Errorf("kafka: %w", err)
	}
	logger.Info("servers up", "zookeeper", in.zooKeeper(), "redis", strings.Join(in.redisAddrs(), ","), "mysql", in.mysql.Addr, "kafka", in.kafka.Brokers)
	return in, nil
}

// zooKeeper is the connect string of the ZooKeeper server or ensemble.
func (in infra) zooKeeper() string {
	if in.zkEnsemble != nil {
		return in.zkEnsemble.Connect
	}
	return in.zk.Addr
}

// redisAddrs lists the Redis server, or every node of the cluster.
func (in infra) redisAddrs() []string {
	if in.redisCluster != nil {
		return in.redisCluster.Addrs()
	}
	return []string{in.redis.Addr}
}

// withRedis adds to a service's environment how it reaches Redis: on a cluster every node, so it can
// start while one is down, and cluster mode.
func (in infra) withRedis(env map[string]string) map[string]string {
	env["HERALD_REDIS_ADDR"] = strings.Join(in.redisAddrs(), ",")
	if in.redisCluster != nil {
		env["HERALD_REDIS_CLUSTER"] = "true"
	}
	return env
}

// pids names the process of every private server for stack.json (0 while one is stopped). Kafka runs
// inside the stack's own process.
func (in infra) pids() map[string]int {
	out := map[string]int{}
	for _, s := range in.servers() {
		if s.pidName != "" {
			out[s.pidName] = s.pid()
		}
	}
	return out
}

// namedServer is one private server as the control API and stack.json's pids name it.
type namedServer struct {
	name    string // in the control API
	pidName string // in stack.json's pids; "" for Kafka, which has no process of its own
	addr    string // Kafka's lists every broker, comma-separated
	srv     stoppable
	pid     func() int                            // nil for Kafka
	running func() bool                           // set when pid is not
	role    func(context.Context) (string, error) // nil for servers without roles
}

// servers lists the private servers in the order the control API shows them: Redis, MariaDB,
// ZooKeeper, Kafka.
func (in infra) servers() []namedServer {
	var out []namedServer
	if in.redisCluster != nil {
		for i, n := range in.redisCluster.Nodes {
			name := fmt.Sprintf("redis-%d", i+1)
			out = append(out, namedServer{name: name, pidName: name, addr: n.Addr, srv: n, pid: n.PID, role: n.Role})
		}
	} else {
		out = append(out, namedServer{name: "redis", pidName: "redis-server", addr: in.redis.Addr, srv: in.redis, pid: in.redis.PID})
	}
	out = append(out, namedServer{name: "mysql", pidName: "mariadbd", addr: in.mysql.Addr, srv: in.mysql, pid: in.mysql.PID})
	if in.zkEnsemble != nil {
		for _, s := range in.zkEnsemble.Servers {
			name := fmt.Sprintf("zookeeper-%d", s.ID)
			out = append(out, namedServer{name: name, pidName: name, addr: s.Addr, srv: s, pid: s.PID, role: s.Mode})
		}
	} else {
		out = append(out, namedServer{name: "zookeeper", pidName: "zookeeper", addr: in.zk.Addr, srv: in.zk, pid: in.zk.PID})
	}
	out = append(out, namedServer{name: "kafka", addr: strings.Join(in.kafka.Brokers, ","), srv: in.kafka, running: in.kafka.Running})
	for i := range out {
		if pid := out[i].pid; pid != nil {
			out[i].running = func() bool { return pid() != 0 }
		}
	}
	return out
}

// redisName is the control API's name of the Redis server at addr.
func (in infra) redisName(addr string) string {
	for _, s := range in.servers() {
		if s.addr == addr && strings.HasPrefix(s.name, "redis") {
			return s.name
		}
	}
	return ""
}
