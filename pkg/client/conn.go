package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/heraldpush/herald/pkg/apiclient"
	"github.com/heraldpush/herald/pkg/wire"
)

// ErrClosed is the Err of a connection that was closed by this side (Close), and what writes on a
// closing connection return.
var ErrClosed = errors.New("connection closed")

// CloseError is how a connection ended when the server sent a close frame: its code and reason
// (1009 frame too big, 1007 bad UTF-8, 1012 node draining, …). A close frame without a code reports
// 1005, as RFC 6455 section 7.1.5 says.
type CloseError struct {
	Code   int
	Reason string
}

func (e *CloseError) Error() string {
	if e.Reason == "" {
		return fmt.Sprintf("closed by server: %d", e.Code)
	}
	return fmt.Sprintf("closed by server: %d %s", e.Code, e.Reason)
}

// HandshakeError is a push-server's refusal to upgrade to WebSocket: 401 for a missing, bad or
// expired token, 503 when the node takes no connections.
type HandshakeError struct {
	Status  int
	Code    string // from a Herald JSON error body, else empty
	Message string // from a Herald JSON error body, else empty
	Body    string // the start of the body as sent
}

func (e *HandshakeError) Error() string {
	if e.Code != "" {
		return fmt.Sprintf("upgrade refused: %d %s: %s", e.Status, e.Code, e.Message)
	}
	return fmt.Sprintf("upgrade refused: %d %s", e.Status, http.StatusText(e.Status))
}

// maxRefusalBody bounds how much of a refusal's body is kept; a JSON error is far smaller.
const maxRefusalBody = 4 << 10

// readRefusal fills e from the raw HTTP answer gobwas hands to OnStatusError. It runs inside the
// handshake, so the dial deadline bounds it even if the server sends a body without an end.
func (e *HandshakeError) readRefusal(raw io.Reader) {
	resp, err := http.ReadResponse(bufio.NewReader(raw), nil)
	if err != nil {
		return
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxRefusalBody))
	e.Body = string(body)
	if api := apiclient.ParseError(resp.StatusCode, body); api.Code != "" {
		e.Code, e.Message = api.Code, api.Message
	}
}

// closeHandshakeWait is how long Close waits for the server to answer its close frame before it drops
// the TCP connection anyway.
const closeHandshakeWait = 2 * time.Second

// errBuffer is the capacity of the Errors channel. Error frames are diagnostics; see offer.
const errBuffer = 16

// Conn is one WebSocket connection to a push-server, from Dial. Its methods are safe for concurrent
// use. A reader goroutine answers WebSocket pings, delivers pushes and error frames, and notices the
// end; a heartbeat goroutine sends application pings so the server keeps the connection.
type Conn struct {
	nc      net.Conn
	rd      *wsutil.Reader // used by the reader goroutine only (and by Dial before it starts)
	welcome wire.Welcome
	log     *slog.Logger

	heartbeat    time.Duration
	readTimeout  time.Duration // zero while the welcome is read, which has its own deadline
	writeTimeout time.Duration
	autoAck      bool

	pushes   chan wire.Push
	errs     chan wire.Error
	rooms    chan wire.RoomFrame
	roomSeen func(room, id string)
	ups      *upTable // where up_ack, joined, left and error frames with a ref go to their callers
	ownSinks bool     // Dial's connections close their channels at the end; a Client's outlive them

	maxUp atomic.Int64 // the size of the largest up frame written; see refusedAsTooBig

	// wmu serialises frame writes: pings, acks, pongs and the close frame come from different
	// goroutines, and interleaved bytes would corrupt the stream.
	wmu       sync.Mutex
	closeSent bool // guarded by wmu; RFC 6455 allows no frame after a close frame

	// emu guards err: the first cause of the end wins, later symptoms (a read on a closed socket) do not.
	emu sync.Mutex
	err error

	reconnect atomic.Pointer[wire.Reconnect]

	closing   chan struct{} // closed when the end begins: a blocked push delivery gives up
	stopOnce  sync.Once
	closeOnce sync.Once
	hbDone    chan struct{}
	done      chan struct{}
}

// sinks are the channels a connection delivers into, and the sends waiting for answers: its own
// (Dial) or its Client's.
type sinks struct {
	pushes chan wire.Push
	errs   chan wire.Error
	rooms  chan wire.RoomFrame
	ups    *upTable
	own    bool
	// roomSeen, when set, is told the last message id of each room frame, before it is delivered.
	roomSeen func(room, id string)
}

// Dial connects to a push-server and reads its welcome frame. It uses cfg.Token and cfg.WSURL when
// both are set, else it logs in (or mints a token) first. ctx bounds the login, the handshake and the
// welcome, not the connection's life: that ends with Close or with the server.
//
// A server that refuses the upgrade gives a *HandshakeError; an auth failure an *APIError.
func Dial(ctx context.Context, cfg Config) (*Conn, error) {
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	sess, ok := cfg.fixedSession()
	if !ok {
		var err error
		if sess, err = cfg.session(ctx, ""); err != nil {
			return nil, err
		}
	}
	c, err := dial(ctx, cfg, sess, sinks{
		pushes: make(chan wire.Push, cfg.pushBuffer()),
		errs:   make(chan wire.Error, errBuffer),
		rooms:  make(chan wire.RoomFrame, cfg.pushBuffer()),
		ups:    newUpTable(),
		own:    true,
	})
	if err != nil {
		return nil, err
	}
	c.start()
	return c, nil
}

// dial makes the connection and reads the welcome but starts no goroutine, so a Client can announce
// the connection before any of its pushes arrive.
func dial(ctx context.Context, cfg Config, sess Session, sk sinks) (*Conn, error) {
	// The token goes into a raw header line: a line break would let it add headers of its own.
	if strings.ContainsAny(sess.Token, "\r\n") {
		return nil, errors.New("dial: token contains a line break")
	}
	var refused HandshakeError
	nd := &net.Dialer{LocalAddr: cfg.LocalAddr}
	d := ws.Dialer{
		Timeout: cfg.dialTimeout(),
		// The server also takes ?token=, but a header keeps the token out of access logs.
		Header:    ws.HandshakeHeaderString("Authorization: Bearer " + sess.Token + "\r\n"),
		NetDial:   nd.DialContext,
		TLSConfig: cfg.TLSConfig,
		OnStatusError: func(_ int, _ []byte, resp io.Reader) {
			refused.readRefusal(resp)
		},
	}
	nc, br, _, err := d.Dial(ctx, sess.WSURL)
	if err != nil {
		var status ws.StatusError
		if errors.As(err, &status) {
			refused.Status = int(status)
			return nil, fmt.Errorf("dial %s: %w", sess.WSURL, &refused)
		}
		return nil, fmt.Errorf("dial %s: %w", sess.WSURL, err)
	}
	var src io.Reader = nc
	if br != nil {
		// The welcome can arrive in the same packet as the handshake answer and then sits in br,
		// which belongs to gobwas's pool: copy it out and give the buffer back.
		prefix := make([]byte, br.Buffered())
		_, _ = io.ReadFull(br, prefix)
		ws.PutReader(br)
		src = io.MultiReader(bytes.NewReader(prefix), nc)
	}

	limit := cfg.maxMessageSize()
	c := &Conn{
		nc:           nc,
		log:          cfg.logger(),
		writeTimeout: cfg.writeTimeout(),
		autoAck:      cfg.AutoAck,
		pushes:       sk.pushes,
		errs:         sk.errs,
		rooms:        sk.rooms,
		roomSeen:     sk.roomSeen,
		ups:          sk.ups,
		ownSinks:     sk.own,
		closing:      make(chan struct{}),
		hbDone:       make(chan struct{}),
		done:         make(chan struct{}),
	}
	c.rd = &wsutil.Reader{
		Source:         src,
		State:          ws.StateClientSide,
		CheckUTF8:      true,
		MaxFrameSize:   limit,
		MaxMessageSize: limit,
		// A ping may come between the fragments of a message; it still wants its pong.
		OnIntermediate: c.control,
	}
	w, err := c.readWelcome(ctx, cfg.dialTimeout())
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("read welcome from %s: %w", sess.WSURL, err)
	}
	c.welcome = w
	c.heartbeat = cfg.Heartbeat
	if c.heartbeat <= 0 {
		c.heartbeat = time.Duration(w.HeartbeatS) * time.Second
	}
	if c.heartbeat <= 0 {
		c.heartbeat = DefaultHeartbeat
	}
	c.readTimeout = orDuration(cfg.ReadTimeout, 3*c.heartbeat)
	c.log = c.log.With("ws_url", sess.WSURL, "node", w.Node, "conn_id", w.ConnID)
	return c, nil
}

func (c *Conn) readWelcome(ctx context.Context, timeout time.Duration) (wire.Welcome, error) {
	_ = c.nc.SetReadDeadline(time.Now().Add(timeout))
	// A deadline in the past unblocks the read at once when ctx ends.
	stop := context.AfterFunc(ctx, func() { _ = c.nc.SetReadDeadline(time.Unix(1, 0)) })
	p, err := c.readMessage()
	if !stop() {
		return wire.Welcome{}, ctx.Err()
	}
	_ = c.nc.SetReadDeadline(time.Time{})
	if err != nil {
		return wire.Welcome{}, err
	}
	var w wire.Welcome
	if err := json.Unmarshal(p, &w); err != nil {
		return wire.Welcome{}, fmt.Errorf("decode welcome: %w", err)
	}
	if w.Type != wire.TypeWelcome {
		return wire.Welcome{}, fmt.Errorf("first frame has type %q, want %q", w.Type, wire.TypeWelcome)
	}
	return w, nil
}

func (c *Conn) start() {
	go c.readLoop()
	go c.heartbeatLoop()
}

// Welcome is the welcome frame the server sent: which node, which connection id, which heartbeat.
func (c *Conn) Welcome() wire.Welcome { return c.welcome }

// Pushes delivers push frames in the order the server sent them, and is closed when the connection
// ends. The channel is bounded (Config.PushBuffer) and nothing is ever dropped: while it is full the
// reader stops reading, so TCP pushes back on the server, which in time disconnects the slow client
// (close 1013) rather than buffering for it. Read it promptly.
func (c *Conn) Pushes() <-chan wire.Push { return c.pushes }

// Errors delivers the error frames the server sent (a rejected frame, rate limiting, …) and is closed
// when the connection ends. An error frame whose ref names a pending SendRef goes to that call
// instead. They are diagnostics, so the reader never waits for them: when nobody reads and the buffer
// is full, the oldest is dropped.
func (c *Conn) Errors() <-chan wire.Error { return c.errs }

// Done is closed when the connection has ended and its goroutines have stopped.
func (c *Conn) Done() <-chan struct{} { return c.done }

// Err says why the connection ended: a *CloseError with the server's code, ErrClosed after Close,
// or the read or write error that broke it. It is nil while the connection is up.
func (c *Conn) Err() error {
	c.emu.Lock()
	defer c.emu.Unlock()
	return c.err
}

// ReconnectFrame returns the reconnect frame the server sent, if it sent one: the node is draining
// and the client should log in again to be sent to another.
func (c *Conn) ReconnectFrame() (wire.Reconnect, bool) {
	if r := c.reconnect.Load(); r != nil {
		return *r, true
	}
	return wire.Reconnect{}, false
}

// Ack tells the server the push with this id was handled, so it is not replayed.
func (c *Conn) Ack(ctx context.Context, id string) error {
	return c.writeJSON(ctx, wire.Inbound{Type: wire.TypeAck, ID: id})
}

// WriteRaw writes one final frame with any opcode and payload, unchecked: for tests that must send
// what a correct client never would (bad UTF-8, oversized frames, garbage JSON).
func (c *Conn) WriteRaw(op ws.OpCode, payload []byte) error {
	return c.write(context.Background(), op, payload)
}

// Close sends close 1000 and waits a short while for the server's answer before it drops the TCP
// connection. It returns once the connection's goroutines have stopped; pushes not yet read from
// Pushes are still there, later ones are dropped.
func (c *Conn) Close() error {
	c.closeOnce.Do(func() {
		c.setErr(ErrClosed)
		_ = c.sendClose(wire.CloseNormal, "")
		c.stop()
	})
	t := time.NewTimer(closeHandshakeWait)
	defer t.Stop()
	select {
	case <-c.done:
	case <-t.C:
		c.nc.Close()
		<-c.done
	}
	return nil
}

func (c *Conn) setErr(err error) {
	c.emu.Lock()
	defer c.emu.Unlock()
	if c.err == nil {
		c.err = err
	}
}

func (c *Conn) stop() {
	c.stopOnce.Do(func() { close(c.closing) })
}

func (c *Conn) readLoop() {
	defer c.finish()
	for {
		p, err := c.readMessage()
		if err != nil {
			c.readFailed(err)
			return
		}
		c.dispatch(p)
	}
}

// readFailed records why reading ended and, when the protocol asks for it, answers with a close frame.
func (c *Conn) readFailed(err error) {
	var ce *CloseError
	switch {
	case errors.As(err, &ce):
		// RFC 6455 section 5.5.1: answer a close frame, typically echoing its code; a code that may
		// not be sent is answered as the protocol error it is.
		echo := ce.Code
		if echo != 1005 && ws.CheckCloseFrameData(ws.StatusCode(echo), "") != nil {
			echo = wire.CloseProtocolError
		}
		_ = c.sendClose(echo, "")
		c.setErr(ce)
		return
	case errors.Is(err, wsutil.ErrInvalidUTF8):
		_ = c.sendClose(wire.CloseInvalidPayload, "invalid utf-8")
	case errors.Is(err, wsutil.ErrFrameTooLarge), errors.Is(err, wsutil.ErrMessageTooLarge):
		_ = c.sendClose(wire.CloseTooBig, "message too big")
	case errors.As(err, new(ws.ProtocolError)):
		_ = c.sendClose(wire.CloseProtocolError, err.Error())
	}
	c.setErr(fmt.Errorf("read: %w", err))
}

func (c *Conn) finish() {
	c.stop()
	c.nc.Close()
	<-c.hbDone
	if c.ownSinks {
		close(c.pushes)
		close(c.errs)
		close(c.rooms)
	}
	c.log.Debug("connection ended", "err", c.Err())
	close(c.done)
}

// readMessage reads the next data message, answering control frames on the way.
func (c *Conn) readMessage() ([]byte, error) {
	for {
		if c.readTimeout > 0 {
			_ = c.nc.SetReadDeadline(time.Now().Add(c.readTimeout))
		}
		hdr, err := c.rd.NextFrame()
		if err != nil {
			return nil, err
		}
		if hdr.OpCode.IsControl() {
			if err := c.control(hdr, c.rd); err != nil {
				return nil, err
			}
			continue
		}
		// The reader joins fragments and enforces MaxMessageSize, so this cannot grow without bound.
		return io.ReadAll(c.rd)
	}
}

// control handles a ping, pong or close frame whose payload (at most 125 bytes, which the reader
// checked) is r.
func (c *Conn) control(hdr ws.Header, r io.Reader) error {
	p, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	switch hdr.OpCode {
	case ws.OpPing:
		err := c.write(context.Background(), ws.OpPong, p)
		if errors.Is(err, ErrClosed) {
			// No pong after our close frame; the close handshake is under way.
			return nil
		}
		return err
	case ws.OpClose:
		if len(p) < 2 {
			return &CloseError{Code: 1005}
		}
		code, reason := ws.ParseCloseFrameData(p)
		return &CloseError{Code: int(code), Reason: reason}
	}
	return nil // an unsolicited pong is allowed and means nothing
}

func (c *Conn) dispatch(p []byte) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(p, &head); err != nil {
		c.log.Warn("undecodable frame from server", "err", err)
		return
	}
	switch head.Type {
	case wire.TypePush:
		var push wire.Push
		if err := json.Unmarshal(p, &push); err != nil {
			c.log.Warn("undecodable push frame", "err", err)
			return
		}
		select {
		case c.pushes <- push:
		case <-c.closing:
			return
		}
		if c.autoAck {
			// A failed write ends the connection, and the push is replayed on the next one.
			_ = c.Ack(context.Background(), push.ID)
		}
	case wire.TypeError:
		var e wire.Error
		if err := json.Unmarshal(p, &e); err != nil {
			c.log.Warn("undecodable error frame", "err", err)
			return
		}
		c.log.Debug("error frame", "code", e.Code, "message", e.Message, "ref", e.Ref)
		if c.ups.fail(e) {
			return
		}
		offer(c.errs, e)
	case wire.TypeUpAck:
		var a wire.UpAck
		if err := json.Unmarshal(p, &a); err != nil {
			c.log.Warn("undecodable up_ack frame", "err", err)
			return
		}
		if !c.ups.ack(a) {
			// The send gave up (its ctx ended) or an earlier attempt was acked already.
			c.log.Debug("up_ack for no pending send", "ref", a.Ref, "id", a.ID)
		}
	case wire.TypeReconnect:
		var r wire.Reconnect
		_ = json.Unmarshal(p, &r)
		c.log.Info("server asks to reconnect", "reason", r.Reason)
		c.reconnect.Store(&r)
	case wire.TypeRoom:
		var f wire.RoomFrame
		if err := json.Unmarshal(p, &f); err != nil {
			c.log.Warn("undecodable room frame", "err", err)
			return
		}
		if c.roomSeen != nil && len(f.Items) > 0 {
			c.roomSeen(f.Room, f.Items[len(f.Items)-1].ID)
		}
		select {
		case c.rooms <- f:
		case <-c.closing:
		}
	case wire.TypeJoined, wire.TypeLeft:
		var a wire.RoomAnswer
		if err := json.Unmarshal(p, &a); err != nil {
			c.log.Warn("undecodable room answer", "err", err)
			return
		}
		answer := "" // what the waiting Join learns: whether the server recovered what it missed
		if a.Recovered != nil && *a.Recovered {
			answer = recoveredAnswer
		}
		if a.Ref == "" || !c.ups.ack(wire.UpAck{Ref: a.Ref, ID: answer}) {
			// Joined or left by the server (push-route's room API), not by this client.
			c.log.Debug("room membership changed by the server", "type", a.Type, "room", a.Room)
		}
	case wire.TypePong:
		// Liveness only: any frame resets the read deadline.
	default:
		// Frames are added to the protocol over time; ignoring unknown ones keeps old clients working.
		c.log.Debug("ignored frame", "type", head.Type)
	}
}

func (c *Conn) heartbeatLoop() {
	defer close(c.hbDone)
	t := time.NewTicker(c.heartbeat)
	defer t.Stop()
	for {
		select {
		case <-c.closing:
			return
		case <-t.C:
			if err := c.writeJSON(context.Background(), wire.Inbound{Type: wire.TypePing}); err != nil {
				return
			}
		}
	}
}

func (c *Conn) writeJSON(ctx context.Context, v any) error {
	p, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return c.write(ctx, ws.OpText, p)
}

// sendClose sends a close frame; 1005 and 0 mean "no code", which RFC 6455 forbids sending.
func (c *Conn) sendClose(code int, reason string) error {
	var body []byte
	if code != 0 && code != 1005 {
		body = ws.NewCloseFrameBody(ws.StatusCode(code), reason)
	}
	return c.write(context.Background(), ws.OpClose, body)
}

// write sends one final frame, masked as a client must. The frame is built whole first so it goes out
// in one write call under the lock.
func (c *Conn) write(ctx context.Context, op ws.OpCode, payload []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	h := ws.Header{Fin: true, OpCode: op, Length: int64(len(payload)), Masked: true, Mask: ws.NewMask()}
	var buf bytes.Buffer
	buf.Grow(ws.HeaderSize(h) + len(payload))
	if err := ws.WriteHeader(&buf, h); err != nil {
		return err
	}
	start := buf.Len()
	buf.Write(payload)
	ws.Cipher(buf.Bytes()[start:], h.Mask, 0)

	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.closeSent {
		return ErrClosed
	}
	if op == ws.OpClose {
		c.closeSent = true
	}
	deadline := time.Now().Add(c.writeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	_ = c.nc.SetWriteDeadline(deadline)
	if _, err := c.nc.Write(buf.Bytes()); err != nil {
		// Part of the frame may be out: nothing more can be sent on this stream.
		err = fmt.Errorf("write: %w", err)
		c.setErr(err)
		c.nc.Close()
		return err
	}
	return nil
}

// offer sends v on ch without waiting; when ch is full it drops the oldest value for v, so a reader
// that comes late sees the latest news. Only one goroutine at a time may offer on a channel.
func offer[T any](ch chan T, v T) {
	select {
	case ch <- v:
		return
	default:
	}
	select {
	case <-ch:
	default:
	}
	select {
	case ch <- v:
	default:
	}
}
