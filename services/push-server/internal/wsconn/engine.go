package wsconn

import (
	"encoding/binary"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/gobwas/ws"
	"golang.org/x/sys/unix"

	"github.com/heraldpush/herald/pkg/netpoll"
	"github.com/heraldpush/herald/pkg/wsframe"
)

// Close codes the engine itself sends.
const (
	closeProtocol  = 1002
	closeBadData   = 1007
	closeTooBig    = 1009
	closeNormal    = 1000
	closeNoStatus  = 1005
	readBufferSize = 16 << 10
)

// Handler receives what connections send.
type Handler interface {
	// OnMessage gets each complete text or binary message, on a worker goroutine; payload is only
	// valid during the call. Messages of one connection arrive in order, never concurrently.
	OnMessage(c *Conn, payload []byte)
	// OnClose is called once per connection after its socket is closed, with the close code and
	// reason the server sent or received (0 when the peer just went away).
	OnClose(c *Conn, code int, reason string)
}

// Config sizes the engine.
type Config struct {
	Pollers    int // epoll instances, each with one goroutine (0: 1)
	Workers    int // goroutines reading ready sockets (0: 64)
	MaxMessage int // largest inbound message payload; larger closes with 1009 (0: 64 KiB)
}

// Engine watches connections and reads their frames.
type Engine struct {
	cfg     Config
	handler Handler
	pollers []*netpoll.Poller
	jobs    chan *Conn
	bufs    sync.Pool
	polling sync.WaitGroup
	working sync.WaitGroup

	// mu guards conns, the descriptor → connection table the pollers resolve events through.
	mu    sync.RWMutex
	conns map[int]*Conn
}

// NewEngine starts the pollers and workers.
func NewEngine(cfg Config, h Handler) (*Engine, error) {
	if cfg.Pollers <= 0 {
		cfg.Pollers = 1
	}
	if cfg.Workers <= 0 {
		cfg.Workers = 64
	}
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = 64 << 10
	}
	e := &Engine{
		cfg:     cfg,
		handler: h,
		jobs:    make(chan *Conn, cfg.Workers*64),
		conns:   make(map[int]*Conn),
	}
	e.bufs.New = func() any { b := make([]byte, readBufferSize); return &b }
	for range cfg.Pollers {
		p, err := netpoll.New()
		if err != nil {
			e.Close()
			return nil, err
		}
		e.pollers = append(e.pollers, p)
	}
	for _, p := range e.pollers {
		e.polling.Go(func() {
			if err := p.Wait(e.ready); err != nil {
				panic(fmt.Sprintf("wsconn: poller failed: %v", err))
			}
		})
	}
	for range cfg.Workers {
		e.working.Go(e.work)
	}
	return e, nil
}

// Close stops the pollers and workers. Connections still open stay open but are no longer read.
func (e *Engine) Close() {
	for _, p := range e.pollers {
		p.Close()
	}
	// The pollers feed the workers, so they stop first.
	e.polling.Wait()
	close(e.jobs)
	e.working.Wait()
	for _, p := range e.pollers {
		p.Release()
	}
}

// Attach takes over fd for c and starts watching it. From now on the engine owns the descriptor.
func (e *Engine) Attach(c *Conn) error {
	c.lastSeen.Store(time.Now().Unix())
	e.mu.Lock()
	e.conns[c.fd] = c
	e.mu.Unlock()
	// Any read readiness that came before Add is reported by Add itself (epoll checks the socket).
	if err := e.pollers[c.fd%len(e.pollers)].Add(c.fd); err != nil {
		e.mu.Lock()
		delete(e.conns, c.fd)
		e.mu.Unlock()
		return err
	}
	return nil
}

// ready runs on a poller goroutine for every event; it must not block.
func (e *Engine) ready(fd int, ev int) {
	e.mu.RLock()
	c := e.conns[fd]
	e.mu.RUnlock()
	if c == nil {
		return
	}
	if ev&netpoll.Writable != 0 {
		c.flush()
	}
	if ev&netpoll.Readable != 0 && c.sched.Add(1) == 1 {
		e.jobs <- c
	}
}

func (e *Engine) work() {
	for c := range e.jobs {
		e.serve(c)
	}
}

// serve reads c until the socket is drained and no new readiness arrived meanwhile, or until the
// handler paused the connection.
func (e *Engine) serve(c *Conn) {
	for {
		seen := c.sched.Load()
		done, parked := e.readAll(c)
		if done {
			e.release(c)
			return // sched stays above 0: no worker will take this connection again
		}
		if parked {
			return // sched stays above 0 too; Resume hands the connection to a worker again
		}
		if c.sched.CompareAndSwap(seen, 0) {
			return
		}
	}
}

// readAll reads until EAGAIN and handles every complete frame. done is true when the connection is
// finished (the peer closed, a read failed or the server closed it); parked when the handler paused it.
func (e *Engine) readAll(c *Conn) (done, parked bool) {
	// Frames received before a pause and not handled yet come first.
	if c.rd != nil && c.rd.resume {
		c.rd.resume = false
		data := c.rd.partial
		c.rd.partial = nil
		if e.frames(c, data) {
			return true, false
		}
		if c.park() {
			return false, true
		}
	}
	bp := e.bufs.Get().(*[]byte)
	defer e.bufs.Put(bp)
	for {
		buf := *bp
		start := 0
		if c.rd != nil && len(c.rd.partial) > 0 {
			if len(c.rd.partial) >= len(buf) {
				buf = c.rd.partial[:cap(c.rd.partial)] // a frame larger than the pooled buffer
			} else {
				copy(buf, c.rd.partial)
			}
			start = len(c.rd.partial)
		}
		n, err := unix.Read(c.fd, buf[start:])
		switch {
		case err == unix.EAGAIN:
			return c.closing(), false
		case err == unix.EINTR:
			continue
		case err != nil || n == 0:
			return true, false
		}
		c.lastSeen.Store(time.Now().Unix())
		if c.Transport == SSE {
			continue // the client has nothing to say on an event stream; only its hang-up matters
		}
		if e.frames(c, buf[:start+n]) {
			return true, false
		}
		if c.park() {
			return false, true
		}
	}
}

func (c *Conn) closing() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state != stateOpen
}

// frames handles the complete frames in data and keeps an incomplete tail in c.rd. It returns true
// when the connection must end.
func (e *Engine) frames(c *Conn, data []byte) bool {
	for len(data) > 0 {
		h, ok := wsframe.ParseHeader(data)
		if ok && h.Length > int64(e.cfg.MaxMessage) {
			return e.fail(c, closeTooBig, "frame too large")
		}
		if !ok || int64(len(data)-h.Size) < h.Length {
			need := len(data)
			if ok {
				need = h.Size + int(h.Length)
			}
			e.keepPartial(c, data, need)
			return false
		}
		payload := data[h.Size : h.Size+int(h.Length)]
		data = data[h.Size+int(h.Length):]
		if !h.Masked || h.Rsv != 0 {
			return e.fail(c, closeProtocol, "client frames must be masked and use no extensions")
		}
		ws.Cipher(payload, h.Mask, 0)
		if done := e.frame(c, h, payload); done {
			return true
		}
		if len(data) > 0 && c.pause.Load() != pauseNone {
			// Keep the rest for after Resume; it was read already, so no readiness event will
			// announce it again.
			e.keepPartial(c, data, len(data))
			c.rd.resume = true
			return false
		}
	}
	if c.rd != nil {
		c.rd.partial = nil
		if c.rd.msgOp == 0 {
			c.rd = nil
		}
	}
	return false
}

// keepPartial stores the incomplete frame at the start of data; need is the whole frame's size when
// known, so a large frame's buffer is allocated once.
func (e *Engine) keepPartial(c *Conn, data []byte, need int) {
	if c.rd == nil {
		c.rd = &readState{}
	}
	size := max(need, len(data))
	if size < readBufferSize {
		size = len(data)
	}
	p := make([]byte, len(data), size)
	copy(p, data)
	c.rd.partial = p
}

// frame handles one complete frame.
func (e *Engine) frame(c *Conn, h wsframe.Header, payload []byte) bool {
	switch h.Op {
	case wsframe.OpPing:
		if !h.Fin || len(payload) > 125 {
			return e.fail(c, closeProtocol, "bad control frame")
		}
		c.write(wsframe.Append(make([]byte, 0, len(payload)+2), wsframe.OpPong, payload))
		return false
	case wsframe.OpPong:
		return false
	case wsframe.OpClose:
		code, reason := closeNoStatus, ""
		if len(payload) >= 2 {
			code, reason = int(binary.BigEndian.Uint16(payload)), string(payload[2:])
		}
		reply := code
		switch {
		case len(payload) == 0:
			reply = closeNormal
		case len(payload) == 1 || !validCloseCode(code) || !utf8.ValidString(reason):
			// RFC 6455 7.4: a code no endpoint may send, or a reason that is not UTF-8, is a
			// protocol error; it is not echoed back.
			code, reason, reply = closeProtocol, "invalid close frame", closeProtocol
		}
		c.mu.Lock()
		if c.state == stateOpen {
			c.sendCloseLocked(reply, "")
			c.closeCode, c.closeReason = code, reason
		}
		c.mu.Unlock()
		return true
	case wsframe.OpText, wsframe.OpBinary:
		if c.rd != nil && c.rd.msgOp != 0 {
			return e.fail(c, closeProtocol, "new message inside a fragmented one")
		}
		if !h.Fin {
			if c.rd == nil {
				c.rd = &readState{}
			}
			c.rd.msgOp = h.Op
			c.rd.msg = append([]byte(nil), payload...)
			return false
		}
		return e.message(c, h.Op, payload)
	case wsframe.OpContinuation:
		if c.rd == nil || c.rd.msgOp == 0 {
			return e.fail(c, closeProtocol, "continuation without a message")
		}
		if len(c.rd.msg)+len(payload) > e.cfg.MaxMessage {
			return e.fail(c, closeTooBig, "message too large")
		}
		c.rd.msg = append(c.rd.msg, payload...)
		if !h.Fin {
			return false
		}
		op, msg := c.rd.msgOp, c.rd.msg
		c.rd.msgOp, c.rd.msg = 0, nil
		return e.message(c, op, msg)
	default:
		return e.fail(c, closeProtocol, "unknown opcode")
	}
}

func (e *Engine) message(c *Conn, op byte, payload []byte) bool {
	if op == wsframe.OpText && !utf8.Valid(payload) {
		return e.fail(c, closeBadData, "text frame is not valid UTF-8")
	}
	e.handler.OnMessage(c, payload)
	return c.closing()
}

// fail closes c with code and reason because of what it sent.
func (e *Engine) fail(c *Conn, code int, reason string) bool {
	c.Close(code, reason)
	return true
}

// release frees a finished connection's descriptor and tells the handler.
func (e *Engine) release(c *Conn) {
	c.mu.Lock()
	if c.state == stateClosed {
		c.mu.Unlock()
		return
	}
	c.state = stateClosed
	c.wq = nil
	code, reason := c.closeCode, c.closeReason
	c.mu.Unlock()
	c.rd = nil

	e.mu.Lock()
	delete(e.conns, c.fd)
	e.mu.Unlock()
	e.pollers[c.fd%len(e.pollers)].Remove(c.fd)
	unix.Close(c.fd)
	e.handler.OnClose(c, code, reason)
}

// validCloseCode reports whether a peer may send code in a close frame (RFC 6455 7.4.1 and the IANA
// registry): 1000–1003, 1007–1014, and the 3000–4999 range for libraries and applications.
func validCloseCode(code int) bool {
	switch {
	case code >= 1000 && code <= 1003, code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}
