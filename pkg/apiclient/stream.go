package apiclient

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/heraldpush/herald/pkg/wire"
)

// Bounds of the deliver streams a NodeClient keeps. A stream unused for streamMaxIdle is closed
// rather than reused, well before the node ends it (after two idle minutes), so that end never races
// a batch.
const (
	streamMaxIdle       = time.Minute
	streamMaxIdlePerURL = 64
	// streamDefaultTimeout bounds a batch on a stream when its context has no deadline.
	streamDefaultTimeout = 30 * time.Second
)

// errStreamClosed is a batch's answer on a stream the node ended without answering it.
var errStreamClosed = errors.New("the node ended the deliver stream without answering")

// streamPool holds the idle deliver streams (wire.PathDeliverStream) to each node, as a transport
// holds idle keep-alive connections.
type streamPool struct {
	secret string
	dialer net.Dialer

	mu     sync.Mutex
	idle   map[string][]*deliverStream // node URL → idle streams, the most recently used last
	swept  time.Time                   // when idle was last cleared of stale streams
	closed bool
}

// deliverStream is one open deliver stream: the request body is written through body, a chunk per
// frame, the answer body is read through answer.
type deliverStream struct {
	conn     net.Conn
	buffered *bufio.Reader  // over conn
	answer   io.ReadCloser  // the chunked answer body, read through buffered
	out      *bufio.Writer  // over conn, flushed once per frame
	body     io.WriteCloser // the chunked request body, written through out
	frame    []byte         // the request frame's buffer, reused from batch to batch
	in       []byte         // the answer frame's buffer, likewise
	lastUsed time.Time
}

// deliver sends items on an idle stream to nodeURL, or on a new one, and returns the node's answers.
// A batch is sent once: whatever fails after it was written fails the batch, since the node may have
// delivered some of it. An idle stream the node has ended is found before it is used (alive).
func (p *streamPool) deliver(ctx context.Context, nodeURL string, items []wire.DeliverItem) ([]wire.DeliverResponse, error) {
	st := p.take(nodeURL)
	if st == nil {
		var err error
		if st, err = p.open(ctx, nodeURL); err != nil {
			return nil, err
		}
	}
	stop := watch(ctx, st.conn)
	b, err := st.roundTrip(items)
	var answers []wire.DeliverResponse
	if err == nil {
		answers, err = wire.ParseDeliverBatchResponse(b)
	}
	// Back to the pool only after a clean answer within ctx: the cut-off of a ctx that ended
	// meanwhile may yet land on conn, and would fail the next batch.
	if !stop() || err != nil {
		st.close()
	} else {
		p.put(nodeURL, st)
	}
	return answers, err
}

// take pops the most recently used idle stream to nodeURL that is still open and was used within
// streamMaxIdle.
func (p *streamPool) take(nodeURL string) *deliverStream {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if now.Sub(p.swept) > streamMaxIdle {
		// Streams to a node that has gone are never taken again: close them here, or their
		// sockets would stay open as long as the process.
		p.swept = now
		for url := range p.idle {
			p.dropStale(url, now)
		}
	}
	p.dropStale(nodeURL, now)
	for idle := p.idle[nodeURL]; len(idle) > 0; {
		st := idle[len(idle)-1]
		idle = idle[:len(idle)-1]
		p.idle[nodeURL] = idle
		if st.alive() {
			return st
		}
		st.close()
	}
	return nil
}

// dropStale closes nodeURL's streams unused for streamMaxIdle; they are the first in its list.
func (p *streamPool) dropStale(nodeURL string, now time.Time) {
	idle := p.idle[nodeURL]
	n := 0
	for n < len(idle) && now.Sub(idle[n].lastUsed) >= streamMaxIdle {
		idle[n].close()
		n++
	}
	if n == len(idle) {
		delete(p.idle, nodeURL)
		return
	}
	p.idle[nodeURL] = idle[n:]
}

func (p *streamPool) put(nodeURL string, st *deliverStream) {
	st.lastUsed = time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || len(p.idle[nodeURL]) >= streamMaxIdlePerURL {
		st.close()
		return
	}
	if p.idle == nil {
		p.idle = map[string][]*deliverStream{}
	}
	p.idle[nodeURL] = append(p.idle[nodeURL], st)
}

// close closes every idle stream, and from now on every stream returned to the pool.
func (p *streamPool) close() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, idle := range p.idle {
		for _, st := range idle {
			st.close()
		}
	}
	p.idle = nil
	p.closed = true
}

// open starts a deliver stream to nodeURL: the request head by hand (net/http's client cannot write a
// body while it reads the answer), the answer head through net/http's reader.
func (p *streamPool) open(ctx context.Context, nodeURL string) (*deliverStream, error) {
	u, err := url.Parse(nodeURL)
	if err != nil || u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("a deliver stream needs an http:// URL, not %q", nodeURL)
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	conn, err := p.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("unreachable: %w", err)
	}
	st, err := startStream(ctx, conn, u, p.secret)
	if err != nil {
		conn.Close()
		return nil, err
	}
	return st, nil
}

func startStream(ctx context.Context, conn net.Conn, u *url.URL, secret string) (*deliverStream, error) {
	defer watch(ctx, conn)()
	path := strings.TrimSuffix(u.EscapedPath(), "/") + wire.PathDeliverStream
	head := "POST " + path + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nContent-Type: " + wire.ContentTypeBatchStream +
		"\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n" + wire.SecretHeader + ": " + secret + "\r\n\r\n"
	if _, err := io.WriteString(conn, head); err != nil {
		return nil, err
	}
	// The body follows only once the node has accepted the stream. Expect: 100-continue tells the
	// node so: a refusal is answered at once, where without it net/http would first read the rest of
	// a body that has no end.
	br := bufio.NewReader(conn)
	var resp *http.Response
	for {
		var err error
		if resp, err = http.ReadResponse(br, &http.Request{Method: http.MethodPost}); err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusContinue {
			break
		}
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, ReadError(resp)
	}
	if got := resp.Header.Get("Content-Type"); got != wire.ContentTypeBatchStream {
		resp.Body.Close()
		return nil, fmt.Errorf("answered in %q, not %q", got, wire.ContentTypeBatchStream)
	}
	out := bufio.NewWriter(conn)
	return &deliverStream{conn: conn, buffered: br, answer: resp.Body, out: out, body: httputil.NewChunkedWriter(out)}, nil
}

// roundTrip writes items as one chunk of the body, in one write, and reads the node's answer frame.
func (st *deliverStream) roundTrip(items []wire.DeliverItem) ([]byte, error) {
	st.frame = wire.AppendDeliverBatchRequestFrame(st.frame[:0], items)
	if _, err := st.body.Write(st.frame); err != nil {
		return nil, err
	}
	if err := st.out.Flush(); err != nil {
		return nil, err
	}
	b, err := wire.ReadFrame(st.answer, st.in, maxNodeAnswer)
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = errStreamClosed
		}
		return nil, err
	}
	st.in = b
	return b, nil
}

// alive tells whether an idle stream is still open, without waiting: nothing may arrive on an idle
// stream but its end (the node's shutdown or idle timeout), so anything to read, or the socket's end,
// means the node has ended it. It peeks at the socket with one non-blocking system call.
func (st *deliverStream) alive() bool {
	if st.buffered.Buffered() > 0 {
		return false
	}
	sc, ok := st.conn.(syscall.Conn)
	if !ok {
		return true // not a socket (tests): the batch finds out
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var peekErr error
	var b [1]byte
	if err := raw.Read(func(fd uintptr) bool {
		_, _, peekErr = syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		return true
	}); err != nil {
		return false
	}
	return errors.Is(peekErr, syscall.EAGAIN)
}

func (st *deliverStream) close() {
	st.conn.Close()
}

// watch bounds what is done on conn until the returned stop by ctx's deadline (or
// streamDefaultTimeout) and cuts it short when ctx is canceled. stop reports false when ctx ended
// first: its cut-off may then still land on conn.
func watch(ctx context.Context, conn net.Conn) (stop func() bool) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(streamDefaultTimeout)
	}
	conn.SetDeadline(deadline)
	return context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
}
