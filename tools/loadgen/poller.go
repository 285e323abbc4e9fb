package main

import (
	"encoding/binary"
	"errors"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/gobwas/ws"
)

// In the load modes a worker does not park a goroutine in a read per connection: every frame would
// then cost a wake-up, a read and a read that finds nothing, and the load generator shares the cores
// with the servers it measures. One goroutine waits on an epoll instance instead and reads each ready
// socket once (level-triggered: what is left is reported again), cutting whatever whole frames the
// bytes hold. Writes (heartbeats, up frames) still go through the net.Conn.

// maxClientFrame bounds a frame from the server; a bigger one ends the connection.
const maxClientFrame = 1 << 20

// poller reads the connections registered with it.
type poller struct {
	w    *worker
	epfd int

	mu   sync.Mutex
	byFD map[int32]*conn
}

func newPoller(w *worker, wait time.Duration) (*poller, error) {
	fd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	p := &poller{w: w, epfd: fd, byFD: map[int32]*conn{}}
	go p.run(wait)
	return p, nil
}

// add starts reading c; leftover is what was read with the welcome beyond it. The socket leaves the
// Go runtime: its descriptor is duplicated and the net.Conn closed, because the runtime's own epoll
// would otherwise still wake a thread of this process for every frame that arrives.
func (p *poller) add(c *conn, leftover []byte) error {
	tc, ok := c.nc.(*net.TCPConn)
	if !ok {
		return errors.New("not a TCP connection")
	}
	sc, err := tc.SyscallConn()
	if err != nil {
		return err
	}
	dupErr := errors.New("no descriptor")
	if err := sc.Control(func(fd uintptr) { c.fd, dupErr = syscall.Dup(int(fd)) }); err != nil {
		return err
	}
	if dupErr != nil {
		return dupErr
	}
	syscall.CloseOnExec(c.fd)
	if err := syscall.SetNonblock(c.fd, true); err != nil {
		syscall.Close(c.fd)
		return err
	}
	c.nc.Close()
	c.raw = true
	c.partial = append(c.partial[:0], leftover...)
	if len(c.partial) > 0 {
		p.consume(c, nil, time.Now().UnixNano())
	}
	p.mu.Lock()
	p.byFD[int32(c.fd)] = c
	p.mu.Unlock()
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(c.fd)}
	return syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_ADD, c.fd, &ev)
}

// run reads ready sockets until the process ends. With a wait of 0 it blocks in epoll_wait, so every
// frame that arrives on an idle worker wakes its thread, and on a machine shared with the servers that
// wake-up often preempts the server thread that wrote the frame. With a wait it instead looks every
// wait and sleeps in between: receipts are then stamped up to one wait late, but the worker costs the
// servers far fewer context switches.
func (p *poller) run(wait time.Duration) {
	events := make([]syscall.EpollEvent, 512)
	buf := make([]byte, 64<<10)
	timeout := -1
	if wait > 0 {
		timeout = 0
	}
	for {
		n, err := syscall.EpollWait(p.epfd, events, timeout)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return
		}
		if n == 0 && wait > 0 {
			time.Sleep(wait)
			continue
		}
		for i := range n {
			p.mu.Lock()
			c := p.byFD[events[i].Fd]
			p.mu.Unlock()
			if c == nil || c.ended.Load() {
				continue
			}
			p.read(c, buf)
		}
	}
}

// read takes what c's socket holds, up to len(buf) at a time.
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
		case err == syscall.EAGAIN || err == syscall.EINTR:
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
		h, hlen, ok := parseHeader(data)
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
		switch h.OpCode {
		case ws.OpText, ws.OpBinary:
			p.w.onFrame(c, payload, now)
		case ws.OpClose:
			code, _ := ws.ParseCloseFrameDataUnsafe(payload)
			p.drop(c, "closed_"+strconv.Itoa(int(code)))
			return false
		case ws.OpPing:
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
	if p.byFD[int32(c.fd)] == c {
		delete(p.byFD, int32(c.fd))
	}
	p.mu.Unlock()
}

// drop stops reading c and ends it.
func (p *poller) drop(c *conn, kind string) {
	p.mu.Lock()
	if p.byFD[int32(c.fd)] == c {
		delete(p.byFD, int32(c.fd))
	}
	p.mu.Unlock()
	_ = syscall.EpollCtl(p.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
	p.w.end(c, kind)
}

// parseHeader reads a frame header at the start of b: the header and its length in bytes; false
// when b does not hold all of it yet.
func parseHeader(b []byte) (h ws.Header, n int, ok bool) {
	if len(b) < 2 {
		return h, 0, false
	}
	h.Fin = b[0]&0x80 != 0
	h.Rsv = (b[0] & 0x70) >> 4
	h.OpCode = ws.OpCode(b[0] & 0x0f)
	h.Masked = b[1]&0x80 != 0
	n = 2
	switch l := b[1] & 0x7f; l {
	case 126:
		if len(b) < 4 {
			return h, 0, false
		}
		h.Length = int64(binary.BigEndian.Uint16(b[2:4]))
		n = 4
	case 127:
		if len(b) < 10 {
			return h, 0, false
		}
		h.Length = int64(binary.BigEndian.Uint64(b[2:10]) & (1<<63 - 1))
		n = 10
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		if len(b) < n+4 {
			return h, 0, false
		}
		copy(h.Mask[:], b[n:n+4])
		n += 4
	}
	return h, n, true
}
