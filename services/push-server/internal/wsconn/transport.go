package wsconn

import (
	"bytes"
	"context"
	"encoding/json"
	"time"

	"github.com/heraldpush/herald/pkg/wsframe"
)

// Transport is how a connection's frames reach its client. Every transport carries the same frames
// (JSON envelopes); only their framing on the wire differs.
type Transport uint8

const (
	// WebSocket frames on a raw socket served from epoll.
	WebSocket Transport = iota
	// SSE is a text/event-stream response on a raw socket served from epoll, like a WebSocket: one
	// `data:` event per frame. The client sends nothing on it (its frames come by POST /send); the
	// engine reads only to notice the peer going away.
	SSE
	// Poll has no socket at all: frames queue (bounded by the queue limit) until the client's next
	// long-poll takes them, so a session between polls is its queue only.
	Poll
)

func (t Transport) String() string {
	switch t {
	case SSE:
		return "sse"
	case Poll:
		return "poll"
	default:
		return "websocket"
	}
}

// pollState is what a Poll connection has instead of a socket.
type pollState struct {
	// waiter is closed to wake the poll waiting in Take; nil while none waits.
	waiter chan struct{}
	// gen numbers the polls; a poll superseded by a newer one of the same session ends empty.
	gen uint64
	// onClose is the handler's OnClose: with no socket there is no engine read to call it.
	onClose  func(c *Conn, code int, reason string)
	closed   bool // closed, and onClose not called yet
	notified bool
}

// NewPollConn returns a connection without a socket, for long-polling. Writes queue until Take; onClose
// is called once, after it is closed (by Close, a full queue, or Abort's caller never: see Abort).
func NewPollConn(maxQueue int, onClose func(c *Conn, code int, reason string)) *Conn {
	c := NewConn(-1, maxQueue)
	c.Transport = Poll
	c.poll = &pollState{onClose: onClose}
	return c
}

// Touch records that the client was heard from outside the socket (a POST /send or a poll).
func (c *Conn) Touch() { c.lastSeen.Store(time.Now().Unix()) }

// Waiting reports whether a long-poll waits on the connection now; such a session is not idle.
func (c *Conn) Waiting() bool {
	if c.poll == nil {
		return false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.poll.waiter != nil
}

// Heartbeat writes an SSE comment, which keeps proxies from timing the stream out and shows a dead
// peer by a failing write. It does nothing on other transports, whose clients ping.
func (c *Conn) Heartbeat() {
	if c.Transport == SSE {
		c.write([]byte(":\n\n"))
	}
}

// Take returns the payloads queued for a Poll connection, oldest first, waiting up to timeout (or
// until ctx ends) for the first. closed is true once the connection is closed: its last payload is
// then the close frame, and nothing follows. A Take that another Take of the same connection
// supersedes while it waits returns nothing.
func (c *Conn) Take(ctx context.Context, timeout time.Duration) (payloads [][]byte, closed bool) {
	c.Touch()
	defer c.Touch()
	c.mu.Lock()
	if c.state != stateOpen || (c.wq != nil && len(c.wq.bufs) > 0) || timeout <= 0 {
		defer c.mu.Unlock()
		return c.takeLocked()
	}
	if c.poll.waiter != nil {
		close(c.poll.waiter)
	}
	c.poll.gen++
	gen, wake := c.poll.gen, make(chan struct{})
	c.poll.waiter = wake
	c.mu.Unlock()

	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-wake:
	case <-t.C:
	case <-ctx.Done():
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.poll.gen != gen {
		return nil, false
	}
	if c.poll.waiter == wake {
		c.poll.waiter = nil
	}
	if ctx.Err() != nil {
		return nil, false // the client gave up on this poll: what is queued waits for its next one
	}
	return c.takeLocked()
}

func (c *Conn) takeLocked() ([][]byte, bool) {
	var out [][]byte
	if c.wq != nil {
		out = c.wq.bufs
		c.wq = nil
	}
	return out, c.state != stateOpen
}

// wakeLocked ends the poll waiting on a Poll connection, if any.
func (c *Conn) wakeLocked() {
	if c.poll != nil && c.poll.waiter != nil {
		close(c.poll.waiter)
		c.poll.waiter = nil
	}
}

// unlock releases mu and, when the connection has no socket and was closed under the lock, calls its
// onClose: the engine calls OnClose for socket connections, after its read of the hang-up.
func (c *Conn) unlock() {
	var fire bool
	if c.poll != nil && c.poll.closed && !c.poll.notified {
		c.poll.notified, fire = true, true
	}
	c.mu.Unlock()
	if fire {
		c.poll.onClose(c, c.closeCode, c.closeReason)
	}
}

// encode frames payload for c's transport. The result may be queued: payload must not change after.
func (c *Conn) encode(payload []byte) []byte {
	switch c.Transport {
	case SSE:
		return appendEvent(make([]byte, 0, len(payload)+8), payload)
	case Poll:
		return payload
	}
	op := byte(wsframe.OpText)
	if c.Binary {
		op = wsframe.OpBinary
	}
	return wsframe.Append(make([]byte, 0, len(payload)+10), op, payload)
}

// appendEvent appends payload as one server-sent event. Each line of it becomes a data line, which
// the browser joins again with newlines; Herald's frames are compact JSON, so there is one.
func appendEvent(dst, payload []byte) []byte {
	for {
		line, rest, more := bytes.Cut(payload, []byte("\n"))
		dst = append(dst, "data: "...)
		dst = append(dst, bytes.TrimSuffix(line, []byte("\r"))...)
		dst = append(dst, '\n')
		if !more {
			return append(dst, '\n')
		}
		payload = rest
	}
}

// closePayload is the frame that tells an HTTP-transport client why its session ended, since it has no
// WebSocket close frame: {"type":"close","code","reason"} with the same codes.
func closePayload(code int, reason string) []byte {
	b, _ := json.Marshal(struct {
		Type   string `json:"type"`
		Code   int    `json:"code"`
		Reason string `json:"reason,omitempty"`
	}{"close", code, reason}) // wire.TypeClose; this package knows frames only as bytes
	return b
}
