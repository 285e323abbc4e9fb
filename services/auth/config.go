package main

import (
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/heraldpush/herald/pkg/config"
	"github.com/heraldpush/herald/pkg/httpapi"
)

// Config is auth's configuration. Every field is a flag, and HERALD_<FLAG_NAME> in the environment
// (see pkg/config); the defaults suit the local stack.
type Config struct {
	ListenAddr       string
	InternalAddr     string
	MySQLDSN         string
	ZooKeeper        string
	ZKSessionTimeout time.Duration
	PrivateKey       string // PEM text or a path to a PEM file
	TokenTTL         time.Duration
	MaxBody          int64
	LoginPerUID      int // login attempts per uid per minute (also the burst)
	LoginPerIP       int // login attempts per client address per minute (also the burst)
	ClientIPHeader   string
	AllowedOrigins   []string // browsers that may call POST /v1/login from another origin
	BcryptCost       int
	MySQLTimeout     time.Duration
	LogLevel         string
	ShutdownTimeout  time.Duration
}

func parseConfig(args []string, getenv func(string) string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("auth", flag.ContinueOnError)
	fs.StringVar(&c.ListenAddr, "listen-addr", "127.0.0.1:8081", "public API listener (host:port)")
	fs.StringVar(&c.InternalAddr, "internal-addr", "127.0.0.1:9081", "internal listener for /metrics, /healthz, /readyz")
	fs.StringVar(&c.MySQLDSN, "mysql-dsn", "root@tcp(127.0.0.1:3306)/herald", "MySQL DSN (go-sql-driver/mysql form)")
	fs.StringVar(&c.ZooKeeper, "zookeeper", "127.0.0.1:2181", "ZooKeeper connect string (comma-separated host:port)")
	fs.DurationVar(&c.ZKSessionTimeout, "zk-session-timeout", 10*time.Second, "ZooKeeper session timeout; with no session for this long the push-server list counts as unknown")
	fs.StringVar(&c.PrivateKey, "jwt-private-key", "", "Ed25519 private key for signing tokens: PEM text or a file path (required)")
	fs.DurationVar(&c.TokenTTL, "token-ttl", 24*time.Hour, "lifetime of issued tokens")
	fs.Int64Var(&c.MaxBody, "max-body", httpapi.DefaultMaxBody, "largest request body in bytes (413 above)")
	fs.IntVar(&c.LoginPerUID, "login-rate-per-uid", 10, "login attempts allowed per uid per minute (429 above)")
	fs.IntVar(&c.LoginPerIP, "login-rate-per-ip", 120, "login attempts allowed per client address per minute (429 above)")
	fs.StringVar(&c.ClientIPHeader, "client-ip-header", "", "header carrying the client address when behind a proxy (e.g. X-Forwarded-For); empty uses the peer address")
	fs.IntVar(&c.BcryptCost, "bcrypt-cost", 10, "bcrypt cost for password hashes")
	var origins string
	fs.StringVar(&origins, "allowed-origins", "", "comma-separated origins of web pages that may call POST /v1/login (CORS); others are refused with 403; empty: no cross-origin page may read its answers, and none is refused")
	fs.DurationVar(&c.MySQLTimeout, "mysql-timeout", 2*time.Second, "bound of one request's MySQL work (an account or API key check); past it the request answers 503 unavailable instead of waiting on a frozen database")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long in-flight requests may finish after SIGTERM")
	if err := config.Parse(fs, args, getenv); err != nil {
		return Config{}, err
	}
	for _, o := range strings.Split(origins, ",") {
		if o = strings.TrimSpace(o); o != "" {
			c.AllowedOrigins = append(c.AllowedOrigins, o)
		}
	}
	if c.MySQLTimeout <= 0 {
		return Config{}, fmt.Errorf("-mysql-timeout must be positive")
	}
	if c.PrivateKey == "" {
		return Config{}, fmt.Errorf("-jwt-private-key (%s) is required", config.EnvName("jwt-private-key"))
	}
	return c, nil
}
