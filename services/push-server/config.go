package main

import (
	"flag"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"strings"
	"time"

	"github.com/heraldpush/herald/pkg/config"
)

// Config is push-server's configuration. Every field is a flag, and HERALD_<FLAG_NAME> in the
// environment (see pkg/config); the defaults suit one node of the local stack.
type Config struct {
	NodeID           string
	ListenAddr       string
	InternalAddr     string
	AdvertiseWSURL   string // what auth hands to devices; default ws://<listen-addr>/ws
	AdvertiseIntURL  string // what push-route calls; default http://<internal-addr>
	Weight           int
	RedisAddr        string
	RedisCluster     bool
	ZooKeeper        string
	ZKSessionTimeout time.Duration
	PublicKeys       string // PEM text or file paths, comma-separated
	InternalSecret   string // guards this node's internal API; also sent on calls to push-route
	PushRouteURL     string // push-route's internal listener: acks, pending messages
	KafkaBrokers     string
	UpstreamTopic    string
	UpstreamTimeout  time.Duration
	MaxUpInFlight    int
	MaxUpData        int
	AllowedOrigins   []string

	HeartbeatS       int
	HandshakeTimeout time.Duration
	MaxConns         int
	MaxConnsPerUser  int
	MaxFrame         int
	MaxQueue         int
	MaxSendBody      int
	PollTimeout      time.Duration
	RoomPolicy       string
	MaxRoomsPerConn  int
	RoomWindow       time.Duration
	MsgRate          float64
	MsgBurst         int
	RateStrikes      int

	Pollers         int
	Workers         int
	DrainBatch      int
	DrainInterval   time.Duration
	GCPercent       int
	LogLevel        string
	ShutdownTimeout time.Duration
}

// upEnvelope is the room an up frame needs around its data: type, ref (at most 128 bytes) and quoting.
const upEnvelope = 1 << 10

func parseConfig(args []string, getenv func(string) string) (Config, error) {
	var c Config
	host, _ := os.Hostname()
	var origins string
	fs := flag.NewFlagSet("push-server", flag.ContinueOnError)
	fs.StringVar(&c.NodeID, "node-id", "ps-"+host, "this node's id in ZooKeeper and Redis routes (letters, digits, ._:@-)")
	fs.StringVar(&c.ListenAddr, "listen-addr", "127.0.0.1:8082", "public listener: GET /ws (WebSocket), GET /sse, GET /poll, POST /send (HTTP transports), /healthz, /readyz")
	fs.StringVar(&c.InternalAddr, "internal-addr", "127.0.0.1:9082", "internal listener: deliver, broadcast, kick, stats, drain, /metrics, /healthz, /readyz")
	fs.StringVar(&c.AdvertiseWSURL, "advertise-ws-url", "", "WebSocket URL devices are given (default ws://<listen-addr>/ws; behind a TLS load balancer, its wss:// URL)")
	fs.StringVar(&c.AdvertiseIntURL, "advertise-internal-url", "", "internal URL push-route calls (default http://<internal-addr>)")
	fs.IntVar(&c.Weight, "weight", 1, "share of new users relative to other nodes")
	fs.StringVar(&c.RedisAddr, "redis-addr", "127.0.0.1:6379", "Redis address (host:port); with -redis-cluster, any of the cluster's nodes, comma-separated")
	fs.BoolVar(&c.RedisCluster, "redis-cluster", false, "Redis is a Redis Cluster (never guessed from the number of addresses)")
	fs.StringVar(&c.ZooKeeper, "zookeeper", "127.0.0.1:2181", "ZooKeeper connect string")
	fs.DurationVar(&c.ZKSessionTimeout, "zk-session-timeout", 10*time.Second, "ZooKeeper session timeout: a dead node's znode vanishes this long after it stops")
	fs.StringVar(&c.PublicKeys, "jwt-public-keys", "", "Ed25519 public keys verifying tokens: PEM text or comma-separated file paths (required)")
	fs.StringVar(&c.InternalSecret, "internal-secret", "", "shared secret for the internal API (required); also sent on calls to push-route")
	fs.StringVar(&c.KafkaBrokers, "kafka-brokers", "127.0.0.1:9092", "Kafka bootstrap brokers (comma-separated host:port) for upstream messages")
	fs.StringVar(&c.UpstreamTopic, "upstream-topic", "herald.upstream", "Kafka topic of upstream messages (key uid)")
	fs.DurationVar(&c.UpstreamTimeout, "upstream-timeout", 5*time.Second, "how long an up frame may wait for Kafka before the device gets a retryable error")
	fs.IntVar(&c.MaxUpInFlight, "max-up-inflight", 32, "upstream messages per connection waiting for Kafka; at this many the connection's reads pause")
	fs.IntVar(&c.MaxUpData, "max-up-data", 64<<10, "largest upstream data in bytes (error frame payload_too_large above)")
	fs.StringVar(&c.PushRouteURL, "push-route-url", "http://127.0.0.1:9080", "base URL of push-route's internal listener: acks from devices go there in batches, and each new connection's pending offline messages come from there (calls carry -internal-secret)")
	fs.StringVar(&origins, "allowed-origins", "", "comma-separated Origin values browsers may connect from, by WebSocket or the HTTP transports (CORS); empty: any; non-browser clients send none")
	fs.IntVar(&c.HeartbeatS, "heartbeat", 30, "heartbeat interval in seconds told to clients; silent for 3× this, a connection is closed")
	fs.DurationVar(&c.HandshakeTimeout, "handshake-timeout", 5*time.Second, "time allowed for the WebSocket upgrade")
	fs.IntVar(&c.MaxConns, "max-conns", 1_000_000, "connections this node accepts (503 at upgrade above)")
	fs.IntVar(&c.MaxConnsPerUser, "max-conns-per-user", 16, "connections per uid; the oldest gets an error frame \"replaced\" and is closed")
	fs.IntVar(&c.MaxFrame, "max-frame", 65<<10, "largest inbound message in bytes (close 1009 above); at least -max-up-data plus 1 KiB for the up frame around the data")
	fs.IntVar(&c.MaxQueue, "max-queue", 256<<10, "bytes queued for a slow client before it is closed (1013)")
	fs.IntVar(&c.MaxSendBody, "max-send-body", 256<<10, "largest POST /send body in bytes (413 above): one frame or an array of frames of an SSE or long-poll session; at least -max-frame")
	fs.DurationVar(&c.PollTimeout, "poll-timeout", 25*time.Second, "how long GET /poll waits for a frame before answering []")
	fs.StringVar(&c.RoomPolicy, "room-policy", "token", "who may join a room: token (the rooms its token's claim names) or open (anyone, any room)")
	fs.IntVar(&c.MaxRoomsPerConn, "max-rooms-per-conn", 64, "rooms one connection may be in (error frame too_many_rooms above)")
	fs.DurationVar(&c.RoomWindow, "room-window", 0, "merge window of room messages: a room's messages within it go out as one frame (0: each at once)")
	fs.Float64Var(&c.MsgRate, "msg-rate", 20, "inbound messages per second per connection (error frame rate_limited above)")
	fs.IntVar(&c.MsgBurst, "msg-burst", 40, "inbound message burst per connection")
	fs.IntVar(&c.RateStrikes, "rate-strikes", 50, "refused messages in a row before the connection is closed (1008)")
	fs.IntVar(&c.Pollers, "pollers", max(1, runtime.NumCPU()/2), "epoll instances")
	fs.IntVar(&c.Workers, "workers", 64, "goroutines reading ready connections")
	fs.IntVar(&c.DrainBatch, "drain-batch", 2000, "connections closed per step while draining")
	fs.DurationVar(&c.DrainInterval, "drain-interval", 100*time.Millisecond, "pause between drain steps")
	fs.IntVar(&c.GCPercent, "gc-percent", 25, "Go GC target percentage (GOGC); lower trades GC CPU for memory per connection; the GOGC variable overrides it")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 60*time.Second, "how long a drain may take before the node exits anyway")
	if err := config.Parse(fs, args, getenv); err != nil {
		return Config{}, err
	}
	for _, o := range strings.Split(origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			c.AllowedOrigins = append(c.AllowedOrigins, o)
		}
	}
	if c.AdvertiseWSURL == "" {
		c.AdvertiseWSURL = "ws://" + c.ListenAddr + "/ws"
	}
	if c.AdvertiseIntURL == "" {
		c.AdvertiseIntURL = "http://" + c.InternalAddr
	}
	switch {
	case c.PublicKeys == "":
		return Config{}, fmt.Errorf("-jwt-public-keys (%s) is required", config.EnvName("jwt-public-keys"))
	case c.InternalSecret == "":
		return Config{}, fmt.Errorf("-internal-secret (%s) is required", config.EnvName("internal-secret"))
	case strings.Contains(c.NodeID, "|") || c.NodeID == "":
		return Config{}, fmt.Errorf("-node-id %q: must be non-empty and must not contain |", c.NodeID)
	case !validBaseURL(c.PushRouteURL):
		return Config{}, fmt.Errorf("-push-route-url %q: must be an http:// or https:// URL", c.PushRouteURL)
	case c.MaxUpInFlight < 1:
		return Config{}, fmt.Errorf("-max-up-inflight must be at least 1")
	case c.HeartbeatS < 1:
		return Config{}, fmt.Errorf("-heartbeat must be at least 1 second")
	case c.MaxSendBody < c.MaxFrame:
		return Config{}, fmt.Errorf("-max-send-body (%d) must be at least -max-frame (%d): a /send body carries frames", c.MaxSendBody, c.MaxFrame)
	case c.RoomPolicy != "token" && c.RoomPolicy != "open":
		return Config{}, fmt.Errorf("-room-policy %q: token or open", c.RoomPolicy)
	case c.MaxRoomsPerConn < 1 || c.RoomWindow < 0:
		return Config{}, fmt.Errorf("-max-rooms-per-conn must be at least 1 and -room-window not negative")
	case c.PollTimeout < time.Second:
		return Config{}, fmt.Errorf("-poll-timeout must be at least 1s")
	case c.MaxFrame < c.MaxUpData+upEnvelope:
		// Otherwise data just over -max-up-data arrives in a frame over -max-frame, and the device gets
		// close 1009 instead of the error frame payload_too_large that says what was wrong.
		return Config{}, fmt.Errorf("-max-frame (%d) must be at least -max-up-data (%d) + %d, the up frame around the data", c.MaxFrame, c.MaxUpData, upEnvelope)
	}
	return c, nil
}

func validBaseURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.RawQuery == ""
}
