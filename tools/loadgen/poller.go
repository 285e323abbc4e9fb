package main

import (
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldpush/herald/pkg/netpoll"
	"github.com/heraldpush/herald/pkg/wsframe"
)

// In the load modes a worker does not park a goroutine in a read per connection: every frame would
// then cost a wake-up, a read and a read that finds nothing, and the load generator shares the cores
// with the servers it measures. One goroutine waits on an epoll instance instead and reads each ready
// socket until it is empty, cutting whatever whole frames the bytes hold. Writes (heartbeats, up
// frames) go straight to the socket from their senders (conn.write).

// maxClientFrame bounds a frame from the server; a bigger one ends the connection.
const maxClientFrame = 1 << 20

// poller reads the connections registered with it.
type poller struct {
	w  *worker
	np *netpoll.Poller

	mu   sync.Mutex
	byFD map[int]*conn
}

func newPoller(w *worker, wait time.Duration) (*poller, error) {
	np, err := netpoll.New()
	if err != nil {
		return nil, err
	}
	p := &poller{w: w, np: np, byFD: map[int]*conn{}}
	go p.run(wait)
	return p, nil
}

// add starts reading c; leftover is what was read with the welcome beyond it. The socket leaves the
// Go runtime (netpoll.Detach), whose own epoll would otherwise still wake a thread of this process for
// every frame that arrives.
func (p *poller) add(c *conn, leftover []byte) error {
	fd, err := netpoll.Detach(c.nc)
	if err != nil {
		return err
	}
	c.fd = fd
	c.nc.Close()
	c.raw = true
	c.partial = append(c.partial[:0], leftover...)
	if len(c.partial) > 0 {
		p.consume(c, nil, time.Now().UnixNano())
	}
	p.mu.Lock()
	p.byFD[c.fd] = c
	p.mu.Unlock()
	return p.np.Add(c.fd)
}

// run reads ready sockets until the process ends. With a wait of 0 it blocks in epoll_wait, so every
// frame that arrives on an idle worker wakes its thread, and on a machine shared with the servers that
// wake-up often preempts the server thread that wrote the frame. With a wait it instead looks every
// wait and sleeps in between: receipts are then stamped up to one wait late, but the worker costs the
// servers far fewer context switches.
func (p *poller) run(wait time.Duration) {
	buf := make([]byte, 64<<10)
	p.np.WaitEvery(wait, func(fd, ev int) {
		if ev&netpoll.Readable == 0 {
			return // writes go through c.write, which waits for room itself
		}
		p.mu.Lock()
		c := p.byFD[fd]
		p.mu.Unlock()
		if c == nil || c.ended.Load() {
			return
		}
		p.read(c, buf)
	})
}

// read takes what c's socket holds, up to len(buf) at a time, until a short read says it is empty
// (edge-triggered: bytes arriving later are a new event).
func (p *poller) read(c *conn, buf []byte) {
	for {
		n, err := syscall.Read(c.fd, buf)
		if n > 0 {
			if !p.consume(c, buf[:n], time.Now().UnixNano()) {
				return
			}
			if n < len(buf) {
				return
			}
			continue
		}
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return
		case err == nil:
			p.drop(c, "read_eof")
		default:
			p.drop(c, failureKind("read", err))
		}
		return
	}
}

// consume handles the whole frames in c's partial bytes followed by data and keeps the rest; false
// when the connection ended.
func (p *poller) consume(c *conn, data []byte, now int64) bool {
	if len(c.partial) > 0 {
		c.partial = append(c.partial, data...)
		data = c.partial
	}
	for {
		h, ok := wsframe.ParseHeader(data)
		hlen := h.Size
		if !ok {
			break
		}
		if h.Length > maxClientFrame {
			p.drop(c, "frame_too_large")
			return false
		}
		end := hlen + int(h.Length)
		if len(data) < end {
			break
		}
		payload := data[hlen:end]
		if h.Masked {
			ws.Cipher(payload, h.Mask, 0)
		}
		data = data[end:]
		switch h.Op {
		case wsframe.OpText, wsframe.OpBinary:
			p.w.onFrame(c, payload, now)
		case wsframe.OpClose:
			code, _ := ws.ParseCloseFrameDataUnsafe(payload)
			p.drop(c, "closed_"+strconv.Itoa(int(code)))
			return false
		case wsframe.OpPing:
			pong, _ := ws.CompileFrame(ws.MaskFrame(ws.NewPongFrame(payload)))
			_ = c.write(pong)
		}
	}
	// Keep the incomplete rest (it may alias c.partial: append copies with memmove).
	c.partial = append(c.partial[:0], data...)
	return true
}

// forget stops routing c's descriptor's events to c.
func (p *poller) forget(c *conn) {
	p.mu.Lock()
	if p.byFD[c.fd] == c {
		delete(p.byFD, c.fd)
	}
	p.mu.Unlock()
}

// drop stops reading c and ends it.
func (p *poller) drop(c *conn, kind string) {
	p.mu.Lock()
	if p.byFD[c.fd] == c {
		delete(p.byFD, c.fd)
	}
	p.mu.Unlock()
	_ = p.np.Remove(c.fd)
	p.w.end(c, kind)
}
