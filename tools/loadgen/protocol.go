package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

// The parent and its workers talk over the workers' stdio: the parent writes the spec as the first
// line of a worker's stdin, then commands (one word a line); the worker answers with events, one JSON
// object a line on its stdout. A worker whose stdin ends stops as if told "stop".

// Commands from the parent.
const (
	cmdConnect = "connect"
	cmdStop    = "stop"
)

// Event kinds from a worker.
const (
	evMinted    = "minted"    // tokens are ready; waiting for "connect"
	evProgress  = "progress"  // connecting; Count is open so far
	evConnected = "connected" // every connection was tried; Count is open
	evFinal     = "final"     // stopped; Count was open at the stop, Lost says what ended before
	evExit      = "exit"      // the parent's own: the worker's output ended
)

// workerSpec is everything a worker needs to know.
type workerSpec struct {
	Index     int      `json:"index"`
	Share     share    `json:"share"`
	UIDs      int      `json:"uids"`
	UIDPrefix string   `json:"uid_prefix"`
	AuthURL   string   `json:"auth_url"`
	APIKey    string   `json:"api_key"`
	Targets   []string `json:"targets"` // WebSocket URLs, round-robin by connection; none: the one auth names
	Sources   []string `json:"sources"` // local addresses, round-robin by connection
	// Rate caps this worker's connects per second (0: no cap); Dialers bounds the connects in flight.
	Rate    float64 `json:"rate"`
	Dialers int     `json:"dialers"`
	// Minters is how many token requests run in parallel.
	Minters     int           `json:"minters"`
	DialTimeout time.Duration `json:"dial_timeout"`
	// Ping is the heartbeat: "app" ({"type":"ping"} text frames), "ws" (WebSocket ping frames) or
	// "none"; PingEvery its interval, 0 meaning the heartbeat_s of the welcome frame.
	Ping      string        `json:"ping"`
	PingEvery time.Duration `json:"ping_every"`
}

// event is one line of a worker's report.
type event struct {
	Kind     string         `json:"kind"`
	Worker   int            `json:"worker"`
	Count    int            `json:"count"`
	Failures map[string]int `json:"failures,omitempty"`
	Seconds  float64        `json:"seconds,omitempty"`
	// LatencyUS is, per opened connection, the microseconds from starting the TCP connect to having
	// read the welcome frame (connected events only).
	LatencyUS []int64 `json:"latency_us,omitempty"`
	// Lost counts the connections that ended while held, by cause (final events only).
	Lost map[string]int `json:"lost,omitempty"`
	// Err says why a worker's output ended early (exit events only).
	Err string `json:"err,omitempty"`
}

// failureKind names what went wrong in phase ("mint", "connect", "handshake", "welcome", "read")
// in a few words fit for counting.
func failureKind(phase string, err error) string {
	var status ws.StatusError
	var errno syscall.Errno
	var ne net.Error
	switch {
	case errors.As(err, &status):
		return fmt.Sprintf("%s_http_%d", phase, int(status))
	case errors.Is(err, os.ErrDeadlineExceeded), errors.Is(err, context.DeadlineExceeded):
		return phase + "_timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return phase + "_eof"
	case errors.Is(err, net.ErrClosed):
		return phase + "_closed"
	case errors.As(err, &errno):
		return phase + "_" + errnoName(errno)
	case errors.As(err, &ne) && ne.Timeout():
		return phase + "_timeout"
	}
	return phase + "_error"
}

func errnoName(e syscall.Errno) string {
	switch e {
	case syscall.ECONNREFUSED:
		return "refused"
	case syscall.ECONNRESET:
		return "reset"
	case syscall.EADDRNOTAVAIL:
		return "addr_not_available"
	case syscall.EADDRINUSE:
		return "addr_in_use"
	case syscall.EMFILE, syscall.ENFILE:
		return "too_many_files"
	case syscall.ETIMEDOUT:
		return "timeout"
	case syscall.EPIPE:
		return "broken_pipe"
	}
	return fmt.Sprintf("errno_%d", int(e))
}
