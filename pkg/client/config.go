package client

import (
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// Defaults for the zero values of Config.
const (
	DefaultMinBackoff     = 100 * time.Millisecond
	DefaultMaxBackoff     = 10 * time.Second
	DefaultDialTimeout    = 10 * time.Second
	DefaultWriteTimeout   = 10 * time.Second
	DefaultHeartbeat      = 30 * time.Second
	DefaultMaxMessageSize = 1 << 20
	DefaultPushBuffer     = 64
	DefaultUpTimeout      = 5 * time.Second
)

// Config says how to reach Herald and how to behave on a connection. The zero value of every
// duration and size means the default named beside it.
type Config struct {
	// AuthURL is the base URL of the auth service. With UID, Device and either Password (POST
	// /v1/login) or APIKey (POST /v1/tokens, for backends that vouch for their users) it is how the
	// client gets sessions. Without it, Token and WSURL must be set, and a client that loses that
	// node or has that token rejected cannot recover.
	AuthURL  string
	UID      string
	Device   string
	Password string
	APIKey   string

	// Token and WSURL are a session to start with instead of logging in first. With AuthURL also
	// set the client logs in when it needs a new session; without it they are all it ever uses.
	Token string
	WSURL string

	// Heartbeat is how often an application-level ping is sent. Zero means the heartbeat_s the
	// server announced in its welcome frame (or DefaultHeartbeat when it announced none). The
	// server closes a connection that is silent for three heartbeats of its own, so a value above
	// the server's gets the connection closed.
	Heartbeat time.Duration
	// ReadTimeout is how long a connection may go without any frame from the server before the
	// client counts it as dead. The server answers every ping, so silence means a dead node or
	// network path, which TCP alone notices only after many minutes. Zero means 3 × Heartbeat.
	ReadTimeout time.Duration
	// WriteTimeout bounds every frame write; a write that cannot finish ends the connection,
	// because a partly written frame leaves the stream unusable. Zero means DefaultWriteTimeout.
	WriteTimeout time.Duration
	// DialTimeout bounds connecting, the WebSocket handshake, reading the welcome frame, and each
	// login call of a Client. Zero means DefaultDialTimeout.
	DialTimeout time.Duration

	// MinBackoff and MaxBackoff bound the delay between reconnection attempts of a Client, and
	// between resends of an up frame the server did not take (no answer, or a retryable error).
	// Zero means DefaultMinBackoff and DefaultMaxBackoff.
	MinBackoff time.Duration
	MaxBackoff time.Duration

	// UpTimeout is how long Client.Send waits for the server's up_ack before it sends the same up
	// frame again. Resending is safe: the frame keeps its ref, from which the server derives the
	// record id, so consumers see the message once. Zero means DefaultUpTimeout.
	UpTimeout time.Duration

	// MaxMessageSize is the largest message accepted from the server; a bigger one ends the
	// connection with close 1009, so a broken or hostile server cannot make the client allocate
	// without bound. Zero means DefaultMaxMessageSize.
	MaxMessageSize int64
	// PushBuffer is the capacity of the Pushes channel. Zero means DefaultPushBuffer.
	PushBuffer int
	// AutoAck acks every push as soon as it is handed to the Pushes channel. Without it the
	// application calls Ack once it has really handled a push.
	AutoAck bool

	// LocalAddr, when set, is the local address WebSocket connections are made from; load tests
	// spread connections over several source addresses to get past one address's ephemeral ports.
	LocalAddr net.Addr
	// TLSConfig is used for wss:// URLs; nil means the system defaults.
	TLSConfig *tls.Config
	// HTTPClient makes the auth calls; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Logger receives connection events; nil means they are discarded.
	Logger *slog.Logger
}

// canLogin reports whether cfg says how to get a new session from auth.
func (cfg Config) canLogin() bool {
	return cfg.AuthURL != "" && cfg.UID != "" && cfg.Device != "" && (cfg.Password != "" || cfg.APIKey != "")
}

func (cfg Config) validate() error {
	if !cfg.canLogin() && (cfg.Token == "" || cfg.WSURL == "") {
		return errors.New("client config: set AuthURL, UID, Device and Password or APIKey, or set Token and WSURL")
	}
	return nil
}

// fixedSession is the session given in the config, if any.
func (cfg Config) fixedSession() (Session, bool) {
	if cfg.Token == "" || cfg.WSURL == "" {
		return Session{}, false
	}
	return Session{Token: cfg.Token, WSURL: cfg.WSURL}, true
}

func orDuration(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (cfg Config) dialTimeout() time.Duration { return orDuration(cfg.DialTimeout, DefaultDialTimeout) }
func (cfg Config) writeTimeout() time.Duration {
	return orDuration(cfg.WriteTimeout, DefaultWriteTimeout)
}

func (cfg Config) upTimeout() time.Duration { return orDuration(cfg.UpTimeout, DefaultUpTimeout) }

func (cfg Config) backoffBounds() (lo, hi time.Duration) {
	lo = orDuration(cfg.MinBackoff, DefaultMinBackoff)
	hi = max(orDuration(cfg.MaxBackoff, DefaultMaxBackoff), lo)
	return lo, hi
}

func (cfg Config) maxMessageSize() int64 {
	if cfg.MaxMessageSize > 0 {
		return cfg.MaxMessageSize
	}
	return DefaultMaxMessageSize
}

func (cfg Config) pushBuffer() int {
	if cfg.PushBuffer > 0 {
		return cfg.PushBuffer
	}
	return DefaultPushBuffer
}

func (cfg Config) httpClient() *http.Client {
	if cfg.HTTPClient != nil {
		return cfg.HTTPClient
	}
	return http.DefaultClient
}

func (cfg Config) logger() *slog.Logger {
	if cfg.Logger != nil {
		return cfg.Logger
	}
	return slog.New(slog.DiscardHandler)
}
