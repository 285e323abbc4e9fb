// Package service holds the process-level plumbing every Herald binary shares: its logger and running
// its HTTP listeners until the context ends, then shutting them down gracefully.
package service

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/heraldpush/herald/pkg/health"
	"github.com/heraldpush/herald/pkg/leanhttp"
)

// NewLogger returns a JSON slog logger writing to w at the named level (debug, info, warn, error).
func NewLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("log level %q: %w", level, err)
	}
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// BufferLogs returns a writer that buffers what is written to w and flushes it 100 ms after the first
// line it holds, or at 256 KiB, and the function that flushes the rest and stops it, to call before
// the process exits. Unbuffered, every log line is a write system call and, when w is a pipe, a
// wake-up of the reader: at a line per push that cost more CPU than the push itself. A crash loses at
// most the last 100 ms.
func BufferLogs(w io.Writer) (io.Writer, func()) {
	b := newLogBuffer(w, 256<<10, 100*time.Millisecond)
	return b, b.stop
}

// Listener is one endpoint of a service: an HTTP handler, or a server of its own (Accept).
type Listener struct {
	Name string // for logs: "public", "internal"
	Addr string // host:port to listen on, unless Listener is set
	// Listener, when set, is already listening: a service that must know it can take connections
	// before it announces itself (in ZooKeeper, say) listens first.
	Listener net.Listener
	Handler  http.Handler
	// Lean, with Handler, serves it with pkg/leanhttp instead of net/http's server: less CPU per call,
	// for an API whose answers are whole JSON bodies (no streaming, no upgrades, no HTTP/2).
	Lean bool
	// MaxHeaderBytes bounds a request's line and header, answered 431 above (0: 1 MiB).
	MaxHeaderBytes int
	// Accept, when set instead of Handler, serves the listener itself until it is closed (the
	// push-server's WebSocket upgrades, which bypass net/http). Shutdown closes the listener.
	Accept func(net.Listener)
}

// Serve listens on every listener, serves until ctx ends or a listener fails, then shuts all of them
// down, giving in-flight requests up to shutdownTimeout. It returns nil after a clean shutdown.
func Serve(ctx context.Context, logger *slog.Logger, shutdownTimeout time.Duration, listeners ...Listener) error {
	servers := make([]httpServer, 0, len(listeners))
	var raw []net.Listener
	stop := func() error {
		for _, ln := range raw {
			ln.Close()
		}
		return shutdown(servers, shutdownTimeout)
	}
	errc := make(chan error, len(listeners))
	for _, l := range listeners {
		ln := l.Listener
		if ln == nil {
			var err error
			if ln, err = net.Listen("tcp", l.Addr); err != nil {
				stop()
				return fmt.Errorf("listen %s %s: %w", l.Name, l.Addr, err)
			}
		}
		logger.Info("listening", "listener", l.Name, "addr", ln.Addr().String())
		if l.Accept != nil {
			raw = append(raw, ln)
			go l.Accept(ln)
			continue
		}
		var srv httpServer = &http.Server{
			Handler:           l.Handler,
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			MaxHeaderBytes:    l.MaxHeaderBytes,
			ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		}
		if l.Lean {
			srv = &leanhttp.Server{
				Handler:           l.Handler,
				ReadHeaderTimeout: readHeaderTimeout,
				IdleTimeout:       idleTimeout,
				MaxHeaderBytes:    l.MaxHeaderBytes,
				Logger:            logger.With("listener", l.Name),
			}
		}
		servers = append(servers, srv)
		go func() {
			if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("serve %s: %w", l.Name, err)
			}
		}()
	}
	var err error
	select {
	case <-ctx.Done():
		logger.Info("shutting down")
	case err = <-errc:
		logger.Error("listener failed", "err", err)
	}
	if shutErr := stop(); shutErr != nil && err == nil {
		err = shutErr
	}
	return err
}

// Both HTTP servers' limits: a client gets 10 s to send a request's header, and a connection is kept
// 2 min without one.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
)

// httpServer is what Serve needs of net/http's server and of leanhttp's.
type httpServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
}

func shutdown(servers []httpServer, timeout time.Duration) error {
	// A fresh context: the one Serve was given is already done.
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var errs []error
	for _, srv := range servers {
		if err := srv.Shutdown(ctx); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// NewRegistry returns a Prometheus registry with the Go runtime and process collectors, the base of
// every service's /metrics. A registry per process, not the global default, keeps tests that run
// several services in one process apart.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// OpsMux is the base of every service's internal listener: /metrics from reg (which gains the
// readiness checks as herald_ready_check{check}), /healthz, /readyz over ready, and the runtime profiles under /debug/pprof/ (internal only: a profile shows code paths and
// costs CPU while it runs; the command line, which may hold secrets given as flags, is not served).
// Services with an internal API add their endpoints to it.
func OpsMux(reg *prometheus.Registry, ready []health.Check) *http.ServeMux {
	reg.MustRegister(health.Collector(2*time.Second, ready...))
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg}))
	mux.Handle("GET /healthz", health.Healthz())
	mux.Handle("GET /readyz", health.Readyz(2*time.Second, ready...))
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	return mux
}
