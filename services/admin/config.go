package main

import (
	"flag"
	"fmt"
	"net/url"
	"time"

	"github.com/heraldpush/herald/pkg/config"
	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/ident"
)

// Config is admin's configuration. Every field is a flag, and HERALD_<FLAG_NAME> in the environment
// (see pkg/config); the defaults suit the local stack.
type Config struct {
	ListenAddr       string
	InternalAddr     string
	MySQLDSN         string
	ZooKeeper        string
	ZKSessionTimeout time.Duration
	PushAPIURL       string // push-route's public API, no trailing slash
	PushAPIKey       string // empty: pushing and user lookups answer 503 until one is configured
	InternalSecret   string // the push-servers' internal API
	AdminUser        string
	AdminPassword    string // empty: generated (and logged once) when the first admin is created
	SessionKey       string // empty: a random key per process, so sessions end on restart
	SessionTTL       time.Duration
	SecureCookies    bool // false: Secure only on requests that came over TLS (or X-Forwarded-Proto https)
	LoginPerIP       int  // login attempts per client address per minute (also the burst)
	ClientIPHeader   string
	BcryptCost       int
	CallTimeout      time.Duration // one call to push-route or a push-server
	RateInterval     time.Duration // how often push-servers' counters are sampled for the overview's rates
	MaxBody          int64
	KafkaBrokers     string // the upstream archiver's brokers; empty turns the archiver off
	UpstreamTopic    string
	ArchiveGroup     string
	LogLevel         string
	ShutdownTimeout  time.Duration
}

func parseConfig(args []string, getenv func(string) string) (Config, error) {
	var c Config
	fs := flag.NewFlagSet("admin", flag.ContinueOnError)
	fs.StringVar(&c.ListenAddr, "listen-addr", "127.0.0.1:8090", "web console and its JSON API")
	fs.StringVar(&c.InternalAddr, "internal-addr", "127.0.0.1:9090", "internal listener for /metrics, /healthz, /readyz")
	fs.StringVar(&c.MySQLDSN, "mysql-dsn", "root@tcp(127.0.0.1:3306)/herald", "MySQL DSN (go-sql-driver/mysql form)")
	fs.StringVar(&c.ZooKeeper, "zookeeper", "127.0.0.1:2181", "ZooKeeper connect string")
	fs.DurationVar(&c.ZKSessionTimeout, "zk-session-timeout", 10*time.Second, "ZooKeeper session timeout")
	fs.StringVar(&c.PushAPIURL, "push-api-url", "http://127.0.0.1:8080", "base URL of push-route's public API")
	fs.StringVar(&c.PushAPIKey, "push-api-key", "", "API key the console uses against push-route (empty: pushing and connection lookups are unavailable)")
	fs.StringVar(&c.KafkaBrokers, "kafka-brokers", "127.0.0.1:9092", "Kafka brokers (comma-separated) the upstream archiver reads; empty turns the archiver off")
	fs.StringVar(&c.UpstreamTopic, "upstream-topic", "herald.upstream", "Kafka topic of upstream messages")
	fs.StringVar(&c.ArchiveGroup, "archive-group", "herald-archiver", "consumer group of the upstream archiver (one group across all admin instances)")
	fs.StringVar(&c.InternalSecret, "internal-secret", "", "shared secret of the push-servers' internal API (required)")
	fs.StringVar(&c.AdminUser, "admin-user", "admin", "first admin, created at start when the admins table has no such user")
	fs.StringVar(&c.AdminPassword, "admin-password", "", "password of the first admin when it is created (empty: generated and logged once)")
	fs.StringVar(&c.SessionKey, "session-key", "", "HMAC key signing session cookies, at least 32 characters; every admin instance needs the same (empty: random per process, so sessions end on restart)")
	fs.DurationVar(&c.SessionTTL, "session-ttl", 12*time.Hour, "how long a login lasts")
	fs.BoolVar(&c.SecureCookies, "secure-cookies", false, "always mark the session cookie Secure (false: only when the request came over TLS or with X-Forwarded-Proto: https)")
	fs.IntVar(&c.LoginPerIP, "login-rate-per-ip", 20, "login attempts per client address per minute (429 above); API calls with Basic credentials count too")
	fs.StringVar(&c.ClientIPHeader, "client-ip-header", "", "header carrying the client address when behind a proxy (e.g. X-Forwarded-For); empty uses the peer address")
	fs.IntVar(&c.BcryptCost, "bcrypt-cost", 10, "bcrypt cost of new admin and account passwords")
	fs.DurationVar(&c.CallTimeout, "call-timeout", 5*time.Second, "time allowed for one call to push-route or a push-server")
	fs.DurationVar(&c.RateInterval, "rate-interval", 5*time.Second, "how often the push-servers' counters are sampled for the overview's rates")
	fs.Int64Var(&c.MaxBody, "max-body", httpapi.DefaultMaxBody, "largest request body in bytes (413 above)")
	fs.StringVar(&c.LogLevel, "log-level", "info", "log level: debug, info, warn, error")
	fs.DurationVar(&c.ShutdownTimeout, "shutdown-timeout", 10*time.Second, "how long in-flight requests may finish after SIGTERM")
	if err := config.Parse(fs, args, getenv); err != nil {
		return Config{}, err
	}
	switch {
	case c.InternalSecret == "":
		return Config{}, fmt.Errorf("-internal-secret (%s) is required", config.EnvName("internal-secret"))
	case c.SessionKey != "" && len(c.SessionKey) < 32:
		return Config{}, fmt.Errorf("-session-key must be at least 32 characters")
	case ident.Check("admin user", c.AdminUser) != nil || len(c.AdminUser) > 64:
		return Config{}, fmt.Errorf("-admin-user must be 1 to 64 letters, digits and ._:@-")
	case !validBaseURL(c.PushAPIURL):
		return Config{}, fmt.Errorf("-push-api-url %q: must be an http:// or https:// URL", c.PushAPIURL)
	case c.SessionTTL <= 0 || c.CallTimeout <= 0 || c.RateInterval <= 0:
		return Config{}, fmt.Errorf("-session-ttl, -call-timeout and -rate-interval must be positive")
	case c.LoginPerIP < 1:
		return Config{}, fmt.Errorf("-login-rate-per-ip must be at least 1")
	}
	return c, nil
}

func validBaseURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != "" && u.RawQuery == ""
}
