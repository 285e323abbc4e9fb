// Package wsconn serves upgraded WebSocket connections without a goroutine or a buffer per idle
// connection: sockets are raw file descriptors watched by epoll (pkg/netpoll), frames are read by
// a bounded pool of workers into pooled buffers, and writes go straight to the socket, queueing only
// what the kernel would not take.
package wsconn

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/heraldpush/herald/pkg/wsframe"
)

// ErrClosed is returned by writes to a closed or closing connection.
var ErrClosed = errors.New("connection closed")

// ErrSlow is returned when a write would push a connection's queue over its limit; the connection is
// closed as a slow consumer.
var ErrSlow = errors.New("slow consumer: write queue full")

const (
	stateOpen = iota
	stateClosing
	stateClosed
)

// Conn is one client connection: an upgraded WebSocket, an SSE stream or a long-poll session (see
// Transport). Its identity fields are set before Attach and never change; everything else is the
// package's.
type Conn struct {
	ID          uint64
	UID         string
	Device      string
	ConnectedAt int64 // unix milliseconds
	Binary      bool  // the client asked for binary frames
	Transport   Transport

	// Rate is the inbound message bucket; only the goroutine handling this connection's messages
	// touches it.
	Rate Bucket
	// UpInFlight counts this connection's upstream messages waiting for Kafka (the handler's).
	UpInFlight atomic.Int32

	fd       int
	lastSeen atomic.Int64 // unix seconds of the last frame from the client
	// sched counts readiness events not yet handled; the worker that takes it from 0 to 1 owns the
	// reads until it brings it back to 0, so one connection is never read by two workers.
	sched atomic.Int32
	// pause is pauseNone, pauseAsked (the handler asked; the worker has not stopped yet) or
	// pauseParked (no worker reads the connection until Resume).
	pause atomic.Int32
	// rd is the partly received frame or message; nil while none is pending, so idle connections
	// hold no read buffer. Only the owning worker touches it.
	rd *readState
	// poll is set on Poll connections only, which have no socket.
	poll *pollState

	// mu guards everything below: the write side, which any goroutine may use.
	mu          sync.Mutex
	state       uint8
	held        bool        // writes queue until Start: the first frame must be the first the client sees
	wq          *writeQueue // nil while nothing waits for the socket
	closeCode   int
	closeReason string
	maxQueue    int
}

type readState struct {
	partial []byte // bytes of an incomplete frame, or unhandled frames when resume is set
	resume  bool   // partial holds frames received before a pause
	msg     []byte // payload of a fragmented message so far
	msgOp   byte   // its opcode; 0 when no message is fragmented
}

type writeQueue struct {
	bufs  [][]byte
	bytes int
}

// NewConn wraps fd, a connected non-blocking socket that is already upgraded. Until Attach, the
// caller may write to it (the welcome) and must Abort it if it is not attached after all.
func NewConn(fd int, maxQueue int) *Conn {
	if maxQueue <= 0 {
		maxQueue = 1 << 20
	}
	c := &Conn{fd: fd, maxQueue: maxQueue, held: true}
	// Seen now: the idle sweep may visit the connection before it is attached.
	c.lastSeen.Store(time.Now().Unix())
	return c
}

// Start writes first, the frame the client must see before any other, then whatever was written
// meanwhile. Until Start, writes only queue, so a connection can be made reachable (session table,
// routes) before it is greeted without anything overtaking the greeting.
func (c *Conn) Start(first []byte) error {
	frame := c.encode(first)
	c.mu.Lock()
	defer c.unlock()
	if c.state != stateOpen {
		return ErrClosed
	}
	c.held = false
	if c.wq == nil {
		c.wq = &writeQueue{}
	}
	c.wq.bufs = append([][]byte{frame}, c.wq.bufs...)
	c.wq.bytes += len(frame)
	c.flushLocked()
	if c.state != stateOpen {
		return ErrClosed
	}
	return nil
}

// Abort closes a connection that was never attached: it sends a close frame and releases the
// descriptor at once, since no worker will. The handler's OnClose is not called: the caller cleans up.
func (c *Conn) Abort(code int, reason string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.poll != nil {
		c.poll.notified = true
	}
	if c.state == stateOpen {
		c.sendCloseLocked(code, reason)
	}
	if c.state != stateClosed {
		c.state = stateClosed
		c.wq = nil
		if c.fd >= 0 {
			unix.Close(c.fd)
		}
	}
}

// Closed reports whether the connection is closing or closed.
func (c *Conn) Closed() bool { return c.closing() }

// LastSeen is when the client last sent a frame, in unix seconds.
func (c *Conn) LastSeen() int64 { return c.lastSeen.Load() }

// Write sends one prepared message.
func (c *Conn) Write(p *Prepared) error { return c.write(p.frameFor(c)) }

// WriteFrame encodes payload as one frame in the connection's encoding and sends it.
func (c *Conn) WriteFrame(payload []byte) error { return c.write(c.encode(payload)) }

// write sends b, which the caller must not change afterwards: it may stay queued. Bytes the socket
// does not take now are queued and sent when it becomes writable; frames queued meanwhile go out
// together in one writev.
func (c *Conn) write(b []byte) error {
	c.mu.Lock()
	defer c.unlock()
	if c.state != stateOpen {
		return ErrClosed
	}
	if c.wq == nil && !c.held && c.poll == nil {
		n, err := unix.Write(c.fd, b)
		if n == len(b) {
			return nil
		}
		if err != nil && err != unix.EAGAIN && err != unix.EINTR {
			c.shutdownLocked(0, "write failed")
			return err
		}
		if n > 0 {
			b = b[n:]
		}
	}
	if c.wq == nil {
		c.wq = &writeQueue{}
	}
	if c.wq.bytes+len(b) > c.maxQueue {
		c.wq = nil
		if c.poll != nil {
			c.sendCloseLocked(closeSlow, "slow consumer") // what waited is dropped; the next poll learns why
		} else {
			c.shutdownLocked(closeSlow, "slow consumer")
		}
		return ErrSlow
	}
	c.wq.bufs = append(c.wq.bufs, b)
	c.wq.bytes += len(b)
	c.wakeLocked()
	return nil
}

// closeSlow is 1013 (try again later): the client should reconnect, and read faster.
const closeSlow = 1013

// flush writes queued bytes after the socket became writable.
func (c *Conn) flush() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.flushLocked()
}

func (c *Conn) flushLocked() {
	if c.poll != nil {
		return // its queue waits for the next poll
	}
	for c.wq != nil && len(c.wq.bufs) > 0 {
		bufs := c.wq.bufs
		if len(bufs) > 256 {
			bufs = bufs[:256]
		}
		n, err := unix.Writev(c.fd, bufs)
		if n > 0 {
			c.wq.bytes -= n
			for n > 0 {
				if n >= len(c.wq.bufs[0]) {
					n -= len(c.wq.bufs[0])
					c.wq.bufs[0] = nil
					c.wq.bufs = c.wq.bufs[1:]
					continue
				}
				c.wq.bufs[0] = c.wq.bufs[0][n:]
				n = 0
			}
		}
		if err == unix.EAGAIN {
			return
		}
		if err != nil && err != unix.EINTR {
			c.wq = nil
			c.shutdownLocked(0, "write failed")
			return
		}
	}
	c.wq = nil
}

// Close sends a close frame with code and reason and closes the connection; the handler's OnClose
// follows. Closing a closed connection does nothing.
func (c *Conn) Close(code int, reason string) {
	c.mu.Lock()
	defer c.unlock()
	if c.state != stateOpen {
		return
	}
	c.sendCloseLocked(code, reason)
}

func (c *Conn) sendCloseLocked(code int, reason string) {
	switch c.Transport {
	case Poll:
		if c.wq == nil {
			c.wq = &writeQueue{}
		}
		c.wq.bufs = append(c.wq.bufs, closePayload(code, reason))
	case SSE:
		if c.wq == nil {
			unix.Write(c.fd, appendEvent(nil, closePayload(code, reason)))
		}
	default:
		if c.wq == nil {
			unix.Write(c.fd, wsframe.Close(code, reason)) // best effort: the peer learns why if the socket has room
		}
	}
	c.shutdownLocked(code, reason)
}

// shutdownLocked marks the connection closing and shuts the socket down. That wakes epoll with a
// hang-up, and the worker that then reads EOF releases the descriptor: only that worker may close it,
// so a descriptor number is never reused while another goroutine still uses it. A Poll connection,
// with no socket and no worker, is closed at once; what is queued (the close frame last) stays for a
// poll waiting on it, and unlock calls its onClose.
func (c *Conn) shutdownLocked(code int, reason string) {
	c.closeCode, c.closeReason = code, reason
	if c.poll != nil {
		c.state = stateClosed
		c.poll.closed = true
		c.wakeLocked()
		return
	}
	c.state = stateClosing
	unix.Shutdown(c.fd, unix.SHUT_RDWR)
}

// Bucket is a small token bucket for inbound messages, kept inline in Conn (12 bytes) rather than a
// rate.Limiter (about 80) because a million connections carry one each.
type Bucket struct {
	tokens float32
	// Strikes counts refusals since the last allowed message: a client that keeps sending while
	// refused is abusive, not bursty.
	Strikes uint32
	last    int64 // unix nanoseconds
}

// Allow takes a token at now (unix ns), refilling perSec tokens a second up to burst.
func (b *Bucket) Allow(now int64, perSec, burst float32) bool {
	if b.last == 0 {
		b.tokens = burst
	} else {
		b.tokens += float32(now-b.last) / 1e9 * perSec
		if b.tokens > burst {
			b.tokens = burst
		}
	}
	b.last = now
	if b.tokens < 1 {
		b.Strikes++
		return false
	}
	b.tokens--
	b.Strikes = 0
	return true
}
