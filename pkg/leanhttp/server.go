// Package leanhttp serves an http.Handler over HTTP/1.1 with less work per call than net/http's
// server: one goroutine per connection reads a request with http.ReadRequest, calls the handler with
// the answer buffered, and writes the answer with its Content-Length in one write. There is no
// background read, no per-call goroutine hand-off, no chunked answer and no HTTP/2; handlers cannot
// flush, hijack or stream. It is for JSON APIs whose answers are whole and small: on the push API,
// net/http's machinery around each call was a quarter of push-route's CPU (BENCHMARKS.md).
//
// What a client of net/http's server relies on still holds: keep-alive and pipelining, HTTP/1.0,
// Expect: 100-continue, HEAD, 204 and 304 without a body, a header size limit (431), read, idle and
// write timeouts, an unread body drained or the connection closed gently (the answer is not lost to
// a reset), a JSON 400 for a request that cannot be read, a recovered handler panic, and a graceful
// shutdown that finishes calls in flight. Not kept: a request's context is not canceled when its
// client hangs up mid-call (nothing reads the connection while the handler runs), so a call is
// completed once begun.
package leanhttp

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults for a Server's zero fields.
const (
	DefaultReadHeaderTimeout = 10 * time.Second
	DefaultReadTimeout       = 30 * time.Second
	DefaultWriteTimeout      = 10 * time.Second
	DefaultIdleTimeout       = 2 * time.Minute
)

// Server serves Handler on the listeners given to Serve. Set its fields before the first Serve; a
// zero duration or size takes the default named beside it.
type Server struct {
	Handler http.Handler
	// ReadHeaderTimeout bounds reading a request's line and header, from its first byte, and a new
	// connection's wait for its first request (DefaultReadHeaderTimeout).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a request's body, from the end of its header (DefaultReadTimeout).
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one answer (DefaultWriteTimeout).
	WriteTimeout time.Duration
	// IdleTimeout bounds the wait for a connection's next request (DefaultIdleTimeout).
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's line and header (http.DefaultMaxHeaderBytes); a larger one is
	// answered 431 header_too_large.
	MaxHeaderBytes int
	// Logger gets handler panics and unexpected accept errors (slog.Default when nil).
	Logger *slog.Logger

	init     sync.Once
	base     context.Context // every request's context descends from it
	cancel   context.CancelFunc
	shutting atomic.Bool

	mu        sync.Mutex // guards listeners and conns
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
}

func (s *Server) setup() {
	s.init.Do(func() {
		s.base, s.cancel = context.WithCancel(context.Background())
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[*conn]struct{}{}
		if s.ReadHeaderTimeout <= 0 {
			s.ReadHeaderTimeout = DefaultReadHeaderTimeout
		}
		if s.ReadTimeout <= 0 {
			s.ReadTimeout = DefaultReadTimeout
		}
		if s.WriteTimeout <= 0 {
			s.WriteTimeout = DefaultWriteTimeout
		}
		if s.IdleTimeout <= 0 {
			s.IdleTimeout = DefaultIdleTimeout
		}
		if s.MaxHeaderBytes <= 0 {
			s.MaxHeaderBytes = http.DefaultMaxHeaderBytes
		}
		if s.Logger == nil {
			s.Logger = slog.Default()
		}
	})
}

// Serve accepts connections on ln until Shutdown, then returns http.ErrServerClosed, as
// http.Server.Serve does; any other accept failure is returned, after closing ln.
func (s *Server) Serve(ln net.Listener) error {
	s.setup()
	s.mu.Lock()
	if s.shutting.Load() {
		s.mu.Unlock()
		ln.Close()
		return http.ErrServerClosed
	}
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
		ln.Close()
	}()

	var backoff time.Duration
	for {
		rwc, err := ln.Accept()
		if err != nil {
			if s.shutting.Load() {
				return http.ErrServerClosed
			}
			// Out of file descriptors and the like pass: wait and accept again, as net/http does,
			// rather than stop serving every client for one moment's shortage.
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				backoff = min(max(2*backoff, 5*time.Millisecond), time.Second)
				s.Logger.Warn("accept", "err", err, "retry_in", backoff)
				time.Sleep(backoff)
				continue
			}
			return err
		}
		backoff = 0
		c := newConn(s, rwc)
		s.mu.Lock()
		if s.shutting.Load() {
			s.mu.Unlock()
			rwc.Close()
			return http.ErrServerClosed
		}
		s.conns[c] = struct{}{}
		s.mu.Unlock()
		go c.serve()
	}
}

// isTemporary is net/http's test for an accept error worth waiting out (EMFILE, ENFILE, ECONNABORTED).
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

// Shutdown stops accepting, closes idle connections, and waits for calls in flight to be answered
// (each answer says Connection: close). When ctx ends first, the remaining connections are closed,
// their requests' contexts canceled, and ctx's error returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.setup()
	s.mu.Lock()
	s.shutting.Store(true)
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()

	// Polled like net/http's: a connection turns idle at its own pace, and there are few.
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.closeIdle() {
			return nil
		}
		select {
		case <-ctx.Done():
			s.cancel()
			s.mu.Lock()
			for c := range s.conns {
				c.rwc.Close()
			}
			s.mu.Unlock()
			return ctx.Err()
		case <-tick.C:
		}
	}
}

// closeIdle closes the connections waiting for a request and reports whether none is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.state.CompareAndSwap(stateIdle, stateClosed) ||
			time.Since(c.born) > newGrace && c.state.CompareAndSwap(stateNew, stateClosed) {
			c.rwc.Close()
		}
	}
	return len(s.conns) == 0
}

func (s *Server) forget(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}
