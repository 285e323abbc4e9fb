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

	"github.com/heraldpush/herald/tools/loadgen/internal/latency"
)

// The parent and its workers talk over the workers' stdio: the parent writes the spec as the first
// line of a worker's stdin, then commands (one word a line); the worker answers with events, one JSON
// object a line on its stdout. A worker whose stdin ends stops as if told "stop".

// Commands from the parent.
const (
	cmdConnect = "connect"
	cmdMeasure = "measure" // followed by a space and a measureCmd as JSON
	cmdReport  = "report"
	cmdStop    = "stop"
)

// measureCmd sets the measured window of a load phase, in unix ns of the send times: messages sent in
// [Start, End) count. In upstream mode the workers send from From until End.
type measureCmd struct {
	From  int64 `json:"from"`
	Start int64 `json:"start"`
	End   int64 `json:"end"`
}

// loadGOGC is the GC target of loadgen's own processes in the load modes (unless GOGC is set): its
// heap is small and its garbage per call or frame steady, so a higher target costs little memory and
// saves CPU that the servers under test share.
const loadGOGC = 400

// Load modes (-mode).
const (
	modeIdle      = "idle"
	modePush      = "push"
	modeBroadcast = "broadcast"
	modeUpstream  = "upstream"
	modeRoom      = "room"
)

// Event kinds from a worker.
const (
	evMinted    = "minted"    // tokens are ready; waiting for "connect"
	evProgress  = "progress"  // connecting; Count is open so far
	evConnected = "connected" // every connection was tried; Count is open
	evResult    = "result"    // what a load phase saw, asked for by "report"
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

	// Mode is the load mode; the rest is for upstream mode: up frames in flight per connection,
	// sends per second per connection (0: as fast as the window allows), padding in each frame's
	// data, and the pause after a rate_limited error.
	Mode    string        `json:"mode"`
	Window  int           `json:"window"`
	UpRate  float64       `json:"up_rate"`
	UpPad   int           `json:"up_pad"`
	Backoff time.Duration `json:"backoff"`
	// PollWait is how often the worker looks for frames instead of waiting for them (0: wait).
	PollWait time.Duration `json:"poll_wait"`
	// Room mode: connection i joins room <RoomPrefix>-<i mod Rooms>; every SampleEvery-th connection
	// decodes its room frames' messages (the others count frames and bytes only).
	Rooms       int    `json:"rooms"`
	RoomPrefix  string `json:"room_prefix"`
	SampleEvery int    `json:"sample_every"`
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
	// Open lists the global indices of the open connections (connected events of the load modes).
	Open []int `json:"open,omitempty"`
	// Result is what a load phase saw (result events).
	Result *loadResult `json:"result,omitempty"`
}

// loadResult is what one worker's connections saw during a load phase; the parent adds them up.
type loadResult struct {
	// Pushes counts push frames received (push and broadcast modes), UpAcks up_ack frames.
	Pushes int64 `json:"pushes"`
	UpAcks int64 `json:"up_acks"`
	// InWindow counts the pushes or up_acks of messages sent inside the measured window, and Latency
	// is their send-to-receipt time (µs); OutOfWindow the others (warm-up, after the end).
	InWindow    int64         `json:"in_window"`
	OutOfWindow int64         `json:"out_of_window"`
	Latency     *latency.Hist `json:"latency,omitempty"`
	// PerSecond counts the in-window receipts by second of receipt after the window start.
	PerSecond []int64 `json:"per_second,omitempty"`
	// ByStamp is, in broadcast mode, the receipt latency of each broadcast, keyed by its send stamp.
	ByStamp map[int64]*latency.Hist `json:"by_stamp,omitempty"`
	// UpSent counts the up frames written, UpSentInWindow those inside the window.
	UpSent         int64 `json:"up_sent"`
	UpSentInWindow int64 `json:"up_sent_in_window"`
	// Room mode: room frames and their bytes on every connection; Sampled connections decode theirs,
	// and their in-window messages count in InWindow and Latency.
	RoomFrames int64 `json:"room_frames"`
	RoomBytes  int64 `json:"room_bytes"`
	Sampled    int   `json:"sampled"`
	// Errors counts error frames by code; Frames other frames by type (and "oversized").
	Errors map[string]int `json:"errors,omitempty"`
	Frames map[string]int `json:"frames,omitempty"`
	// Open is the connections open at the report; Lost those that ended before, by cause.
	Open int            `json:"open"`
	Lost map[string]int `json:"lost,omitempty"`
}

// add adds o into r (the histograms are merged by the caller).
func (r *loadResult) add(o *loadResult) {
	r.RoomFrames += o.RoomFrames
	r.RoomBytes += o.RoomBytes
	r.Sampled += o.Sampled
	r.Pushes += o.Pushes
	r.UpAcks += o.UpAcks
	r.InWindow += o.InWindow
	r.OutOfWindow += o.OutOfWindow
	for i, n := range o.PerSecond {
		for len(r.PerSecond) <= i {
			r.PerSecond = append(r.PerSecond, 0)
		}
		r.PerSecond[i] += n
	}
	r.UpSent += o.UpSent
	r.UpSentInWindow += o.UpSentInWindow
	r.Errors = addCounts(r.Errors, o.Errors)
	r.Frames = addCounts(r.Frames, o.Frames)
	r.Open += o.Open
	r.Lost = addCounts(r.Lost, o.Lost)
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
