package leanhttp

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/heraldpush/herald/pkg/httpapi"
)

// A connection is new until its first request, idle while it waits for a later one, active from a
// request's first byte to its answer. Shutdown closes idle ones, and new ones that have sent nothing
// for a while (one just accepted may be sending its first request: closing it would fail a call that
// was never refused); one it closed is closed for good.
const (
	stateNew int32 = iota
	stateIdle
	stateActive
	stateClosed
)

// newGrace is how long Shutdown leaves a new connection to send its first request (net/http's figure).
const newGrace = 5 * time.Second

// lingerTime and lingerBytes bound lingerClose.
const (
	lingerTime  = 500 * time.Millisecond
	lingerBytes = 4 << 20
)

// maxDrain is how much of a body the handler left unread is read and dropped to keep the connection;
// past it the connection is closed instead (net/http's figure).
const maxDrain = 256 << 10

// bigAnswer is the answer buffer a connection keeps between calls; a larger one is dropped after use.
const bigAnswer = 64 << 10

type conn struct {
	srv    *Server
	rwc    net.Conn
	remote string
	state  atomic.Int32
	born   time.Time       // accepted at
	ctx    context.Context // ends with the connection, or at a forced shutdown
	cancel context.CancelFunc

	limit   io.LimitedReader // the connection under br: N bounds a request's header, lifted for its body
	br      *bufio.Reader
	bw      *bufio.Writer
	w       answer
	unread  bool     // the client may still be sending: close gently (lingerClose)
	scratch []byte   // for draining bodies
	line    [64]byte // for numbers and the status line

	date    []byte // the Date header's value for dateSec, reused within the second
	dateSec int64
}

func newConn(s *Server, rwc net.Conn) *conn {
	c := &conn{srv: s, rwc: rwc, remote: rwc.RemoteAddr().String(), born: time.Now()}
	c.ctx, c.cancel = context.WithCancel(s.base)
	c.limit.R = rwc
	c.br = bufio.NewReader(&c.limit)
	c.bw = bufio.NewWriter(rwc)
	c.w.header = http.Header{}
	return c
}

func (c *conn) serve() {
	defer func() {
		if p := recover(); p != nil {
			// A bug of this package, not a handler's (callHandler recovers those): lose the
			// connection, not the process.
			c.srv.Logger.Error("connection panic", "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		}
		c.cancel()
		if c.unread {
			c.lingerClose()
		}
		c.rwc.Close()
		c.srv.forget(c)
	}()
	s := c.srv
	for {
		// net/http's allowance: the bufio buffer's worth of slack over the limit.
		c.limit.N = int64(s.MaxHeaderBytes) + 4096
		if c.br.Buffered() == 0 {
			wait := s.IdleTimeout
			if c.state.Load() == stateNew {
				// A connection that never sent a request gets the header's time, not an idle
				// one's: holding connections open should cost an attacker more than it costs us.
				wait = min(wait, s.ReadHeaderTimeout)
			}
			c.rwc.SetReadDeadline(time.Now().Add(wait))
		}
		if !c.skipEmptyLines() {
			return // the client left, stayed idle too long, or Shutdown closed us
		}
		if !c.state.CompareAndSwap(stateIdle, stateActive) && !c.state.CompareAndSwap(stateNew, stateActive) {
			return
		}
		c.rwc.SetReadDeadline(time.Now().Add(s.ReadHeaderTimeout))
		req, err := http.ReadRequest(c.br)
		if err != nil {
			c.refuse(err)
			return
		}
		c.limit.N = math.MaxInt64
		if !c.serveRequest(req) || s.shutting.Load() {
			return
		}
		c.state.Store(stateIdle)
	}
}

// refuse answers a request that could not be read, unless the client simply left or was too slow.
func (c *conn) refuse(err error) {
	switch {
	case c.limit.N <= 0:
		c.writeError(httpapi.Errorf(httpapi.CodeHeaderTooLarge, "request line and header are larger than %d bytes", c.srv.MaxHeaderBytes))
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed), isTimeout(err):
		// Nobody is reading an answer, or the client is too slow to deserve one (as net/http).
	default:
		c.writeError(httpapi.Errorf(httpapi.CodeInvalidRequest, "unreadable HTTP request: %v", err))
	}
}

// skipEmptyLines waits for the next request and skips the empty lines before it (RFC 9112 section
// 2.2: some clients send a CRLF after a body). It reports false when the connection ended or timed
// out first.
func (c *conn) skipEmptyLines() bool {
	for {
		b, err := c.br.Peek(1)
		if err != nil {
			return false
		}
		if b[0] != '\r' && b[0] != '\n' {
			return true
		}
		c.br.Discard(1)
	}
}

// lingerClose stops writing and reads what the client still sends for a moment before the close, so
// the kernel does not answer the unread bytes with a reset that destroys the answer in flight (as
// net/http does).
func (c *conn) lingerClose() {
	if tc, ok := c.rwc.(interface{ CloseWrite() error }); ok && tc.CloseWrite() == nil {
		c.rwc.SetReadDeadline(time.Now().Add(lingerTime))
		io.CopyN(io.Discard, c.rwc, lingerBytes)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// writeError answers with err and Connection: close, outside any request: what the client sent was
// not all read.
func (c *conn) writeError(err error) {
	c.unread = true
	c.w.reset()
	httpapi.WriteError(&c.w, err)
	c.writeAnswer(nil, false)
}

// serveRequest calls the handler and writes its answer; it reports whether the connection may carry
// another request.
func (c *conn) serveRequest(req *http.Request) (keep bool) {
	s := c.srv
	if req.ProtoMajor != 1 {
		c.writeError(httpapi.Errorf(httpapi.CodeInvalidRequest, "unsupported protocol %s: this API speaks HTTP/1.x", req.Proto))
		return false
	}
	if req.ProtoAtLeast(1, 1) && req.Host == "" {
		c.writeError(httpapi.Errorf(httpapi.CodeInvalidRequest, "an HTTP/1.1 request needs a Host header"))
		return false
	}
	if !httpguts.ValidHostHeader(req.Host) {
		c.writeError(httpapi.Errorf(httpapi.CodeInvalidRequest, "malformed Host header"))
		return false
	}
	body := req.Body
	var handlerBody *requestBody
	if body != http.NoBody {
		// The body's time starts now; the header's deadline was for the header.
		c.rwc.SetReadDeadline(time.Now().Add(s.ReadTimeout))
		handlerBody = &requestBody{c: c, body: body}
		// Other expectations than 100-continue are not understood and, as RFC 9110 allows, ignored.
		if expect := req.Header.Get("Expect"); expect != "" && strings.EqualFold(expect, "100-continue") && req.ProtoAtLeast(1, 1) {
			handlerBody.mustContinue = true
		}
		req.Body = handlerBody
	}
	ctx, cancel := context.WithCancel(c.ctx)
	defer cancel()
	req = req.WithContext(ctx)
	req.RemoteAddr = c.remote

	c.w.reset()
	answer := c.callHandler(req)
	if handlerBody != nil {
		handlerBody.done.Store(true) // a handler goroutine reading on after the call gets an error
	}
	if !answer {
		c.unread = handlerBody != nil
		return false
	}
	keep = !req.Close // the client's wish, or a panic's
	switch {
	case handlerBody == nil:
	case handlerBody.mustContinue && !handlerBody.continued:
		// The client waits for our word before sending its body; the answer says not to. It may
		// send it anyway.
		keep, c.unread = false, true
	case !c.drain(body):
		keep, c.unread = false, true
	}
	if httpguts.HeaderValuesContainsToken(c.w.header["Connection"], "close") || s.shutting.Load() {
		keep = false
	}
	return c.writeAnswer(req, keep) && keep
}

// callHandler runs the handler; it reports false when the handler panicked with http.ErrAbortHandler
// (drop the connection, answer nothing). Any other panic is logged and answered 500.
func (c *conn) callHandler(req *http.Request) (answer bool) {
	defer func() {
		p := recover()
		if p == nil {
			return
		}
		if p == http.ErrAbortHandler {
			answer = false
			return
		}
		c.srv.Logger.Error("handler panic", "method", req.Method, "path", req.URL.Path, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
		c.w.reset()
		httpapi.WriteError(&c.w, httpapi.Errorf(httpapi.CodeInternal, "internal error"))
		req.Close = true
		answer = true
	}()
	c.srv.Handler.ServeHTTP(&c.w, req)
	return true
}

// drain reads what the handler left of the body, up to maxDrain; it reports whether the body
// ended there, so the next request starts where this one ends.
func (c *conn) drain(body io.Reader) bool {
	if c.scratch == nil {
		c.scratch = make([]byte, 4096)
	}
	for read := 0; read <= maxDrain; {
		n, err := body.Read(c.scratch)
		read += n
		if err == io.EOF {
			return read <= maxDrain
		}
		if err != nil {
			return false
		}
	}
	return false
}

// writeAnswer writes the handler's answer in one write; req is nil for an answer to a request that
// could not be read. It reports whether the write succeeded.
func (c *conn) writeAnswer(req *http.Request, keep bool) bool {
	w, bw := &c.w, c.bw
	// Before the first byte: an answer larger than bw's buffer reaches the socket before Flush.
	c.rwc.SetWriteDeadline(time.Now().Add(c.srv.WriteTimeout))
	status := w.status
	if status == 0 {
		status = http.StatusOK
	}
	h := w.header
	delete(h, "Connection")
	delete(h, "Transfer-Encoding")
	declared := h["Content-Length"]
	delete(h, "Content-Length")

	bw.WriteString("HTTP/1.1 ")
	bw.Write(appendStatus(c.line[:0], status))
	bw.WriteString("\r\n")
	if _, ok := h["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.Write(c.dateValue())
		bw.WriteString("\r\n")
	}
	head := req != nil && req.Method == http.MethodHead
	if bodyAllowed(status) {
		if _, ok := h["Content-Type"]; !ok && w.buf.Len() > 0 {
			h.Set("Content-Type", http.DetectContentType(w.buf.Bytes()))
		}
		length := int64(w.buf.Len())
		if head && length == 0 {
			// A HEAD handler may state the length of the body it did not write; otherwise the
			// length is unknown and, as net/http, not stated.
			length = -1
			if len(declared) == 1 {
				if n, err := strconv.ParseInt(declared[0], 10, 64); err == nil && n >= 0 {
					length = n
				}
			}
		}
		if length >= 0 {
			bw.WriteString("Content-Length: ")
			bw.Write(strconv.AppendInt(c.line[:0], length, 10))
			bw.WriteString("\r\n")
		}
	}
	switch {
	case !keep:
		bw.WriteString("Connection: close\r\n")
	case req != nil && req.ProtoMajor == 1 && req.ProtoMinor == 0:
		bw.WriteString("Connection: keep-alive\r\n")
	}
	h.Write(bw)
	bw.WriteString("\r\n")
	if bodyAllowed(status) && !head {
		bw.Write(w.buf.Bytes())
	}
	err := bw.Flush()
	if w.buf.Cap() > bigAnswer {
		w.buf = bytes.Buffer{}
	}
	return err == nil
}

// bodyAllowed reports whether an answer with status has a body (RFC 9110: not 1xx, 204 or 304).
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

func appendStatus(b []byte, status int) []byte {
	b = strconv.AppendInt(b, int64(status), 10)
	b = append(b, ' ')
	if text := http.StatusText(status); text != "" {
		return append(b, text...)
	}
	return strconv.AppendInt(append(b, "status code "...), int64(status), 10)
}

// dateValue is the Date header's value, formatted once a second.
func (c *conn) dateValue() []byte {
	now := time.Now()
	if sec := now.Unix(); sec != c.dateSec || c.date == nil {
		c.date = now.UTC().AppendFormat(c.date[:0], http.TimeFormat)
		c.dateSec = sec
	}
	return c.date
}

// requestBody is the body a handler reads. Expect: 100-continue is answered on its first read, so a
// handler that refuses without reading spares the client sending the body. Close only marks it
// closed: net/http's body would read the rest without bound, and drain does that, within maxDrain.
// Once the handler has returned, reads fail, so a goroutine it left behind cannot race the next
// request for the connection's bytes.
type requestBody struct {
	c            *conn
	body         io.Reader
	mustContinue bool // the client waits for 100 Continue before sending the body
	continued    bool // 100 Continue is sent
	closed       bool
	done         atomic.Bool // the handler returned
	err          error
}

func (r *requestBody) Read(p []byte) (int, error) {
	if r.closed || r.done.Load() {
		return 0, http.ErrBodyReadAfterClose
	}
	if r.mustContinue && !r.continued {
		r.continued = true
		r.c.rwc.SetWriteDeadline(time.Now().Add(r.c.srv.WriteTimeout))
		if _, err := io.WriteString(r.c.rwc, "HTTP/1.1 100 Continue\r\n\r\n"); err != nil {
			r.err = fmt.Errorf("send 100 Continue: %w", err)
		}
	}
	if r.err != nil {
		return 0, r.err
	}
	return r.body.Read(p)
}

func (r *requestBody) Close() error {
	r.closed = true
	return nil
}
