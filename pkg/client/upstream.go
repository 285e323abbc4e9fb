package client

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldpush/herald/pkg/wire"
)

// FrameError is an error frame the server sent in answer to one of this client's frames: Ref names
// the frame, Code says what was wrong (the wire.Code… constants).
type FrameError struct {
	Ref     string
	Code    string
	Message string
}

func (e *FrameError) Error() string {
	return fmt.Sprintf("server error %s: %s", e.Code, e.Message)
}

// Retryable reports whether sending the same frame again later can succeed: a dependency of the
// server failed (unavailable) or the client sent too fast (rate_limited). Other codes mean the frame
// itself is wrong and would be refused again.
func (e *FrameError) Retryable() bool {
	return e.Code == wire.CodeUnavailable || e.Code == wire.CodeRateLimited
}

// ErrRefPending is what a send returns when another send with the same ref is still waiting for its
// answer on the same Conn or Client: two waiters could not tell whose answer an up_ack is.
var ErrRefPending = errors.New("ref already pending")

// ErrStopped is what Client.Send returns once Run has returned: no connection will come to send on.
var ErrStopped = errors.New("client stopped")

// NewRef returns a new random ref for an up frame (26 characters, 130 random bits), unique per device
// for all practical purposes, as wire.UpstreamID needs.
func NewRef() string { return rand.Text() }

// upFrame encodes an up frame once, so every resend writes the same bytes.
func upFrame(ref string, data json.RawMessage) ([]byte, error) {
	if ref == "" {
		return nil, errors.New("empty ref")
	}
	if len(data) == 0 {
		return nil, errors.New("no data")
	}
	p, err := json.Marshal(wire.Inbound{Type: wire.TypeUp, Ref: ref, Data: data})
	if err != nil {
		return nil, fmt.Errorf("encode data: %w", err)
	}
	return p, nil
}

// upWaiter is where the reader leaves the server's answers to one pending ref. The reader never
// waits on it: a second ack is the same as the first, and of several errors the latest is kept.
type upWaiter struct {
	acked  chan string      // capacity 1: the id of an up_ack
	failed chan *FrameError // capacity 1, filled with offer by the one reader of the moment
}

// upTable routes up_ack and error frames to the sends waiting for them, by ref. A Dial'd Conn has its
// own; a Client shares one across its connections, so an answer reaches its Send on any of them.
type upTable struct {
	// mu guards waiters.
	mu      sync.Mutex
	waiters map[string]*upWaiter
}

func newUpTable() *upTable {
	return &upTable{waiters: make(map[string]*upWaiter)}
}

func (t *upTable) register(ref string) (*upWaiter, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, ok := t.waiters[ref]; ok {
		return nil, ErrRefPending
	}
	w := &upWaiter{acked: make(chan string, 1), failed: make(chan *FrameError, 1)}
	t.waiters[ref] = w
	return w, nil
}

func (t *upTable) unregister(ref string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.waiters, ref)
}

func (t *upTable) waiter(ref string) *upWaiter {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.waiters[ref]
}

// ack hands an up_ack to its send and reports whether one was waiting.
func (t *upTable) ack(a wire.UpAck) bool {
	w := t.waiter(a.Ref)
	if w == nil {
		return false
	}
	select {
	case w.acked <- a.ID:
	default: // already acked: a resend was acked too, with the same id
	}
	return true
}

// fail hands an error frame to its send and reports whether one was waiting.
func (t *upTable) fail(e wire.Error) bool {
	if e.Ref == "" {
		return false
	}
	w := t.waiter(e.Ref)
	if w == nil {
		return false
	}
	offer(w.failed, &FrameError{Ref: e.Ref, Code: e.Code, Message: e.Message})
	return true
}

// SendRef sends one up frame with data under ref and waits for the server's answer: the record id of
// its up_ack, or a *FrameError (see Retryable) when the server sent an error frame with this ref. It
// sends once and does not resend: when the connection ends first, the error wraps Err. The caller may
// send again with the same ref, on this connection or another, without the message being counted
// twice. Use NewRef for a fresh ref; a ref already pending on this connection gives ErrRefPending.
func (c *Conn) SendRef(ctx context.Context, ref string, data json.RawMessage) (id string, err error) {
	frame, err := upFrame(ref, data)
	if err != nil {
		return "", fmt.Errorf("send up: %w", err)
	}
	w, err := c.ups.register(ref)
	if err != nil {
		return "", fmt.Errorf("send up %s: %w", ref, err)
	}
	defer c.ups.unregister(ref)
	if err := c.writeUp(ctx, frame); err != nil {
		return "", fmt.Errorf("send up %s: %w", ref, err)
	}
	select {
	case id := <-w.acked:
		return id, nil
	case fe := <-w.failed:
		return "", fmt.Errorf("send up %s: %w", ref, fe)
	case <-c.done:
		select {
		case id := <-w.acked: // the ack came just before the end
			return id, nil
		default:
		}
		cause := c.Err()
		if cause == nil {
			cause = ErrClosed
		}
		return "", fmt.Errorf("send up %s: connection ended: %w", ref, cause)
	case <-ctx.Done():
		return "", fmt.Errorf("send up %s: %w", ref, ctx.Err())
	}
}

// writeUp writes an up frame. ctx can stop it before it starts but not halfway: a frame cut short by
// a caller's deadline would end the connection for everyone, so only WriteTimeout bounds the write.
func (c *Conn) writeUp(ctx context.Context, frame []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	c.noteUpSize(len(frame))
	return c.write(context.WithoutCancel(ctx), ws.OpText, frame)
}

// noteUpSize records the largest up frame written, so that after a close 1009 (frame too big) a
// Client can tell which of its sends the server refused.
func (c *Conn) noteUpSize(n int) {
	for {
		old := c.maxUp.Load()
		if int64(n) <= old || c.maxUp.CompareAndSwap(old, int64(n)) {
			return
		}
	}
}

// refusedAsTooBig reports whether conn ended with close 1009 and a frame of size n is to blame: the
// largest up frame written on it is, since the server closes at the first frame over its limit and a
// larger one is over it too. Resending such a frame would only get the next connection closed.
func refusedAsTooBig(conn *Conn, n int) bool {
	var ce *CloseError
	return errors.As(conn.Err(), &ce) && ce.Code == wire.CloseTooBig && int64(n) >= conn.maxUp.Load()
}

// Send sends data upstream under a new ref (NewRef) and returns the record id the server acked. See
// SendRef.
func (c *Client) Send(ctx context.Context, data json.RawMessage) (id string, err error) {
	return c.SendRef(ctx, NewRef(), data)
}

// SendRef sends data upstream under ref and returns once the server has acked it (the id is the
// record id on the upstream topic) or ctx ends. Until then it sends the same frame again, with the
// same ref, whenever that can help: when no answer came within UpTimeout or the server answered with
// a retryable error (these resends wait a jittered backoff between MinBackoff and MaxBackoff first),
// and when the connection ended (the frame goes out again as soon as the next connection is up; a
// Send made between connections waits for one). The server derives the record id from uid, device
// and ref (wire.UpstreamID), so a message sent several times is still one message to consumers.
//
// A caller that persists ref before calling can call SendRef again after a restart with the same
// effect. Refs must be unique per device; a ref already pending on this client gives ErrRefPending.
//
// It fails at once with a *FrameError when the server refuses the frame for good (payload too large,
// invalid frame, …), with an error wrapping the *CloseError when the server closed the connection
// because the frame was too big (close 1009), with ErrStopped once Run has returned, and with ctx's
// error when ctx ends first; in that last case the message may or may not have been stored.
// Concurrent calls are fine; each waits for its own ack.
func (c *Client) SendRef(ctx context.Context, ref string, data json.RawMessage) (id string, err error) {
	frame, err := upFrame(ref, data)
	if err != nil {
		return "", fmt.Errorf("send up: %w", err)
	}
	w, err := c.ups.register(ref)
	if err != nil {
		return "", fmt.Errorf("send up %s: %w", ref, err)
	}
	defer c.ups.unregister(ref)

	fail := func(err error) (string, error) { return "", fmt.Errorf("send up %s: %w", ref, err) }
	lo, hi := c.cfg.backoffBounds()
	timeout := c.cfg.upTimeout()
	failures := 0
	for {
		// An answer to an earlier attempt may have come in the meantime; an ack ends the send, a
		// retryable error is old news, since this attempt is the retry.
		select {
		case id := <-w.acked:
			return id, nil
		case fe := <-w.failed:
			if !fe.Retryable() {
				return fail(fe)
			}
		default:
		}

		conn, changed := c.watch()
		if conn == nil {
			select {
			case <-changed:
			case id := <-w.acked:
				return id, nil
			case fe := <-w.failed:
				if !fe.Retryable() {
					return fail(fe)
				}
			case <-c.stopped:
				return fail(ErrStopped)
			case <-ctx.Done():
				return fail(ctx.Err())
			}
			continue
		}
		if err := conn.writeUp(ctx, frame); err != nil {
			if ctx.Err() != nil {
				return fail(ctx.Err())
			}
			// A failed write ends the connection; the frame goes out again on the next one.
			c.log.Debug("up frame not written, resending on the next connection", "ref", ref, "err", err)
			select {
			case <-conn.Done():
			case <-ctx.Done():
				return fail(ctx.Err())
			}
			continue
		}

		timer := time.NewTimer(timeout)
		retry := false
		select {
		case id := <-w.acked:
			timer.Stop()
			return id, nil
		case fe := <-w.failed:
			timer.Stop()
			if !fe.Retryable() {
				return fail(fe)
			}
			c.log.Debug("up frame refused for now, resending", "ref", ref, "code", fe.Code)
			retry = true
		case <-timer.C:
			c.log.Debug("no up_ack in time, resending", "ref", ref, "timeout", timeout)
			retry = true
		case <-conn.Done():
			timer.Stop()
			if refusedAsTooBig(conn, len(frame)) {
				return fail(fmt.Errorf("frame of %d bytes refused: %w", len(frame), conn.Err()))
			}
		case <-ctx.Done():
			timer.Stop()
			return fail(ctx.Err())
		}
		if !retry {
			continue
		}
		failures++
		if id, done, err := c.pauseSend(ctx, w, backoff(lo, hi, failures)); done {
			if err != nil {
				return fail(err)
			}
			return id, nil
		}
	}
}

// pauseSend waits d before a resend; an ack or a final error that comes meanwhile ends the send
// (done), a retryable one changes nothing, since a resend is already due.
func (c *Client) pauseSend(ctx context.Context, w *upWaiter, d time.Duration) (id string, done bool, err error) {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case <-t.C:
			return "", false, nil
		case id := <-w.acked:
			return id, true, nil
		case fe := <-w.failed:
			if !fe.Retryable() {
				return "", true, fe
			}
		case <-ctx.Done():
			return "", true, ctx.Err()
		}
	}
}
