// Package stackfile is the layout of .herald/stack.json, which the local stack (tools/stack) writes
// and the tools that drive a running stack (tools/loadgen, tools/chaos) read.
package stackfile

import (
	"encoding/json"
	"fmt"
	"os"
)

// Stack is what .herald/stack.json holds (DESIGN.md, "Running it"): the public face of a running
// local stack.
//
// The cluster-shaped stack (make run-cluster) runs several instances of auth and push-route and
// several servers of Redis, ZooKeeper and Kafka. The single-valued fields keep their meaning there
// (the first instance, the first Redis node), and the list fields name every one; the plain stack
// fills the lists too, with one entry each.
type Stack struct {
	// AuthURL and PushAPIURL are the first auth and push-route instance.
	AuthURL    string `json:"auth_url"`
	PushAPIURL string `json:"push_api_url"`
	// AuthURLs and PushAPIURLs are every auth and push-route instance's base URL, in the order of
	// their names (auth-1, auth-2, …).
	AuthURLs      []string `json:"auth_urls"`
	PushAPIURLs   []string `json:"push_api_urls"`
	AdminURL      string   `json:"admin_url"`
	APIKey        string   `json:"api_key"`
	AdminUser     string   `json:"admin_user"`
	AdminPassword string   `json:"admin_password"`
	// InternalSecret guards the push-servers' internal API (an extension of the DESIGN.md fields).
	InternalSecret string       `json:"internal_secret"`
	DemoUID        string       `json:"demo_uid"`
	DemoPassword   string       `json:"demo_password"`
	PushServers    []PushServer `json:"push_servers"`
	// RedisAddr is the Redis server, or the first node of a Redis Cluster.
	RedisAddr string `json:"redis_addr"`
	// RedisAddrs are every Redis node's address (RedisAddr alone without a cluster).
	RedisAddrs []string `json:"redis_addrs"`
	// RedisCluster is set when Redis is a Redis Cluster: a client must then run in cluster mode
	// (-redis-cluster, HERALD_REDIS_CLUSTER=true) and may start from any of RedisAddrs.
	RedisCluster bool `json:"redis_cluster,omitempty"`
	// ZooKeeper is the connect string: every server of the ensemble, comma-separated.
	ZooKeeper    string   `json:"zookeeper"`
	MySQLDSN     string   `json:"mysql_dsn"`
	KafkaBrokers []string `json:"kafka_brokers"`
	// PIDs names every process of the stack (services, servers, and "stack" itself, which holds the
	// Kafka-protocol brokers), so tools can add up what the whole stack spends. The plain stack's
	// are push-route, auth, ps-1, ps-2, admin, redis-server, zookeeper, mariadbd and stack; the
	// cluster-shaped one's push-route-1, push-route-2, auth-1, auth-2, ps-1 to ps-3, admin,
	// redis-1 to redis-6, zookeeper-1 to zookeeper-3, mariadbd and stack. A stopped server's is 0.
	PIDs map[string]int `json:"pids"`
	// ControlURL is the stack's own control API, which tools/chaos uses to take a dependency down
	// and bring it back: POST /servers/{name}/stop and /start, GET /servers (every server with its
	// address, pid, whether it runs and, for Redis and ZooKeeper, its current role) and
	// GET /redis/master?key=K (the Redis server that is master of K's slot now).
	ControlURL string `json:"control_url"`
	// DemoURL is the demo web app: a page that is a Herald client (clients/js), for trying pushes
	// in a browser.
	DemoURL string `json:"demo_url,omitempty"`
	// PrometheusURL is the Prometheus the stack runs with -prometheus (make run PROMETHEUS=1).
	PrometheusURL string `json:"prometheus_url,omitempty"`
}

// PushServer is one push-server node of the stack.
type PushServer struct {
	ID          string `json:"id"`
	WSURL       string `json:"ws_url"`
	InternalURL string `json:"internal_url"`
}

// Read loads the stack description at path.
func Read(path string) (Stack, error) {
	var st Stack
	b, err := os.ReadFile(path)
	if err != nil {
		return st, fmt.Errorf("read the stack description (is make run up?): %w", err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("%s: %w", path, err)
	}
	return st, nil
}
