package main

import (
	"flag"
	"fmt"
	"net/http"
	"time"

	"github.com/heraldpush/herald/pkg/config"
	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/wire"
)

// Config is push-route's configuration. Every field is a flag, and HERALD_<FLAG_NAME> in the
// environment (see pkg/config); the defaults suit the local stack.
type Config struct {
	ListenAddr       string
	InternalAddr     string
	MySQLDSN         string
	RedisAddr        string
	RedisCluster     bool
	ZooKeeper        string
	ZKSessionTimeout time.Duration
	InternalSecret   string
	MaxBody          int64
	MaxHeader        int
	MaxData          int
	MaxUIDs          int
	MaxTTL           time.Duration
	NodeTimeout      time.Duration
	RoomHistory      int
	RoomHistoryTTL   time.Duration
	NodeInFlight     int
	NodeQueue        int
	LookupQueue      int
	BatchMaxUIDs     int
	BatchMaxBytes    int
	LookupInFlight   int
	KeyCacheTTL      time.Duration
	MySQLTimeout     time.Duration
	IdempotencyTTL   time.Duration
	RedeliverWindow  time.Duration
	RedeliverQueue   int
	GCPercent        int
	LogLevel         string
	ShutdownTimeout  time.Duration
}

func parseConfig(args []string, getenv func(string) string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("push-route", flag.ContinueOnError)
	fs.StringVar(&c.ListenAddr, "listen-addr", "127.0.0.1:8080", "public push API listener")
	fs.StringVar(&c.InternalAddr, "internal-addr", "127.0.0.1:9080", "internal listener: push-servers' acks and pending lookups, /metrics, /healthz, /readyz")
	fs.StringVar(&c.MySQLDSN, "mysql-dsn", "root@tcp(127.0.0.1:3306)/herald", "MySQL DSN (go-sql-driver/mysql form)")
	fs.StringVar(&c.RedisAddr, "redis-addr", "127.0.0.1:6379", "Redis address (host:port); with -redis-cluster, any of the cluster's nodes, comma-separated")
	fs.BoolVar(&c.RedisCluster, "redis-cluster", false, "Redis is a Redis Cluster (never guessed from the number of addresses)")
	fs.StringVar(&c.ZooKeeper, "zookeeper", "127.0.0.1:2181", "ZooKeeper connect string")
	fs.DurationVar(&c.ZKSessionTimeout, "zk-session-timeout", 10*time.Second, "ZooKeeper session timeout")
	fs.StringVar(&c.InternalSecret, "internal-secret", "", "shared secret of the internal APIs (required)")
	fs.Int64Var(&c.MaxBody, "max-body", httpapi.DefaultMaxBody, "largest request body in bytes (413 above)")
	fs.IntVar(&c.MaxHeader, "max-header", http.DefaultMaxHeaderBytes, "largest request line and header in bytes (431 above)")
	fs.IntVar(&c.MaxData, "max-data", 64<<10, "largest push data in bytes, as JSON (413 above)")
	fs.IntVar(&c.MaxUIDs, "max-uids", 1000, "uids per push call (400 above)")
	fs.DurationVar(&c.MaxTTL, "max-ttl", 30*24*time.Hour, "longest ttl_s accepted")
	fs.IntVar(&c.RoomHistory, "room-history", 0, "room messages kept per room for members that join again with since (0: no history, no recovery)")
	fs.DurationVar(&c.RoomHistoryTTL, "room-history-ttl", 10*time.Minute, "how long a room's history outlives its last message")
	fs.DurationVar(&c.NodeTimeout, "node-timeout", 2*time.Second, "time allowed for one push-server call; a slower node's users count as not delivered")
	fs.IntVar(&c.NodeInFlight, "node-inflight", 1, "deliver calls in flight to one push-server; pushes arriving meanwhile go together in the next call")
	fs.IntVar(&c.NodeQueue, "node-queue", 10000, "pushes waiting for one push-server; beyond it a push counts that node's users as not delivered")
	fs.IntVar(&c.LookupQueue, "lookup-queue", 10000, "route lookups waiting for Redis; beyond it a push answers 503 overloaded (a ttl message is still stored)")
	fs.IntVar(&c.BatchMaxUIDs, "batch-max-uids", 2000, "uids in one Redis lookup pipeline")
	fs.IntVar(&c.BatchMaxBytes, "batch-max-bytes", 1<<20, "estimated body size of one deliver-batch call to a push-server (at most 4 MiB, what push-servers accept); a larger single push goes alone")
	fs.IntVar(&c.LookupInFlight, "lookup-inflight", 1, "route lookup pipelines in flight to Redis; lookups arriving meanwhile go together in the next one")
	fs.DurationVar(&c.KeyCacheTTL, "key-cache-ttl", 10*time.Second, "how long a verified API key is trusted without asking MySQL (a revoked key works this long)")
	fs.DurationVar(&c.MySQLTimeout, "mysql-timeout", 2*time.Second, "bound of one request's MySQL work (storing a push, checking an API key, acks, pending messages); past it the request answers 503 unavailable instead of waiting on a frozen database")
	fs.DurationVar(&c.IdempotencyTTL, "idempotency-window", 24*time.Hour, "how long a caller id of a message without ttl is remembered")
	fs.DurationVar(&c.RedeliverWindow, "redeliver-window", 30*time.Second, "how long a stored message that missed a connected user (Redis or the node failed) keeps being redelivered once routes can be read again")
	fs.IntVar(&c.RedeliverQueue, "redeliver-queue", 100000, "stored messages waiting for redelivery at most; beyond it they wait for their users' next connect")
	fs.IntVar(&c.GCPercent, "gc-percent", 400, "Go GC target percentage (GOGC); push-route holds little, so a higher target trades a few MiB for less GC CPU per push; the GOGC variable overrides it")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long in-flight requests may finish after SIGTERM")
	if err := config.Parse(fs, args, getenv); err != nil {
		return Config{}, err
	}
	if c.RedeliverQueue < 1 || c.RedeliverWindow <= 0 || c.MySQLTimeout <= 0 {
		return Config{}, fmt.Errorf("-redeliver-queue, -redeliver-window and -mysql-timeout must be positive")
	}
	if c.NodeInFlight < 1 || c.NodeQueue < 1 || c.LookupQueue < 1 || c.BatchMaxUIDs < 1 || c.LookupInFlight < 1 || c.BatchMaxBytes < 1 {
		return Config{}, fmt.Errorf("-node-inflight, -node-queue, -lookup-queue, -batch-max-uids, -batch-max-bytes and -lookup-inflight must be at least 1")
	}
	if c.MaxHeader < 1024 {
		return Config{}, fmt.Errorf("-max-header %d is too small for any real request (at least 1024)", c.MaxHeader)
	}
	if c.RoomHistory < 0 || c.RoomHistoryTTL <= 0 {
		return Config{}, fmt.Errorf("-room-history must not be negative and -room-history-ttl must be positive")
	}
	if c.BatchMaxBytes > wire.MaxInternalBody {
		return Config{}, fmt.Errorf("-batch-max-bytes %d is over the %d bytes push-servers accept", c.BatchMaxBytes, wire.MaxInternalBody)
	}
	if c.InternalSecret == "" {
		return Config{}, fmt.Errorf("-internal-secret (%s) is required", config.EnvName("internal-secret"))
	}
	return c, nil
}
