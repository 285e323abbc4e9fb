package apiclient

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/heraldpush/herald/pkg/wire"
)

// Bounds of the deliver streams a NodeClient keeps. A stream unused for streamMaxIdle is closed
// rather than reused: the node ends streams idle for two minutes, and a stream it has just ended
// would cost the batch sent on it.
const (
	streamMaxIdle       = time.Minute
	streamMaxIdlePerURL = 64
	// streamDefaultTimeout bounds a batch on a stream when its context has no deadline.
	streamDefaultTimeout = 30 * time.Second
)

// errStreamClosed is a batch's answer on a stream the node ended before answering.
var errStreamClosed = errors.New("the node ended the deliver stream")

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

// deliverStream is one open deliver stream: the request body is written straight to conn in chunks,
// the answer body is read through answer.
type deliverStream struct {
	conn     net.Conn
	answer   io.ReadCloser // the chunked answer body, over a buffered reader of conn
	out, in  []byte        // frame buffers, reused from batch to batch
	lastUsed time.Time
}

// deliver sends items on an idle stream to nodeURL, or on a new one, and returns the node's answers.
// A reused stream that turns out to have been ended by the node before it read anything is replaced
// once by a new one: the node ends streams only between batches, so nothing of that batch was
// delivered.
func (p *streamPool) deliver(ctx context.Context, nodeURL string, items []wire.DeliverItem) ([]wire.DeliverResponse, error) {
	for {
		st, reused := p.take(nodeURL)
		if st == nil {
			var err error
			if st, err = p.open(ctx, nodeURL); err != nil {
				return nil, err
			}
		}
		b, err := st.roundTrip(ctx, items)
		if err != nil {
			st.close()
			if reused && errors.Is(err, errStreamClosed) && ctx.Err() == nil {
				continue
			}
			return nil, err
		}
		answers, err := wire.ParseDeliverBatchResponse(b)
		if err != nil {
			st.close()
			return nil, err
		}
		p.put(nodeURL, st)
		return answers, nil
	}
}

// take pops the most recently used idle stream to nodeURL, if one was used within streamMaxIdle.
func (p *streamPool) take(nodeURL string) (*deliverStream, bool) {
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
	idle := p.idle[nodeURL]
	if len(idle) == 0 {
		return nil, false
	}
	st := idle[len(idle)-1]
	p.idle[nodeURL] = idle[:len(idle)-1]
	return st, true
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

// closeIdle closes every idle stream; closing for good also closes streams returned later.
func (p *streamPool) closeIdle(forGood bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, idle := range p.idle {
		for _, st := range idle {
			st.close()
		}
	}
	p.idle = nil
	p.closed = p.closed || forGood
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
	stop := watch(ctx, conn)
	defer stop()
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
	return &deliverStream{conn: conn, answer: resp.Body}, nil
}

// roundTrip writes items as one chunk of the body and reads the node's answer frame, within ctx.
func (st *deliverStream) roundTrip(ctx context.Context, items []wire.DeliverItem) ([]byte, error) {
	stop := watch(ctx, st.conn)
	defer stop()
	// The chunk's size line goes in front of the frame, so the chunk is one write: room for it first.
	const sizeLine = 10 // up to 8 hex digits and CRLF
	st.out = wire.AppendDeliverBatchRequestFrame(append(st.out[:0], make([]byte, sizeLine)...), items)
	size := len(st.out) - sizeLine
	line := strconv.AppendInt(nil, int64(size), 16)
	start := sizeLine - len(line) - 2
	copy(st.out[start:], line)
	copy(st.out[sizeLine-2:], "\r\n")
	st.out = append(st.out, "\r\n"...)
	if _, err := st.conn.Write(st.out[start:]); err != nil {
		return nil, endedEarly(err)
	}
	b, err := wire.ReadFrame(st.answer, st.in, maxNodeAnswer)
	if err != nil {
		return nil, endedEarly(err)
	}
	st.in = b
	return b, nil
}

// endedEarly marks err as errStreamClosed when it shows the node had ended the stream before it read
// the batch: a clean end of the answer where a frame should start (the node ends streams between
// batches), or a reset or broken pipe (it closed with the batch unread). A node that dies while it
// delivers a batch it has read ends the answer without its last chunk, which is not one of these.
func endedEarly(err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) {
		return fmt.Errorf("%w: %w", errStreamClosed, err)
	}
	return err
}

func (st *deliverStream) close() {
	st.conn.Close()
}

// watch bounds what is done on conn until the returned stop by ctx's deadline (or
// streamDefaultTimeout) and cuts it short when ctx is canceled.
func watch(ctx context.Context, conn net.Conn) (stop func()) {
	deadline, ok := ctx.Deadline()
	if !ok {
		deadline = time.Now().Add(streamDefaultTimeout)
	}
	conn.SetDeadline(deadline)
	cancel := context.AfterFunc(ctx, func() { conn.SetDeadline(time.Unix(1, 0)) })
	return func() { cancel() }
}
