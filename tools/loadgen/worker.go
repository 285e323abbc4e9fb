package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldpush/herald/pkg/client"
	"github.com/heraldpush/herald/pkg/wire"
)

// worker holds its share of the connections: it mints their tokens, opens them when told, keeps them
// alive with heartbeats and closes them when told. One goroutine a connection blocks in a read with a
// small buffer; one goroutine sends every connection's heartbeats.
type worker struct {
	spec    workerSpec
	sources []*net.TCPAddr
	out     *json.Encoder
	outMu   sync.Mutex

	// tokens and urls are per connection of the share (index k = global index − Share.First);
	// urls only when following auth's choice of node.
	tokens []string
	urls   []string

	ping     []byte // the heartbeat frame, masked once for every connection
	stopping atomic.Bool

	// rec counts what the load modes receive; senders are the upstream senders, waited for at stop.
	rec     recorder
	senders sync.WaitGroup
	quit    <-chan struct{} // closes when the worker is told to stop
	poll    *poller         // reads the connections in the load modes; nil when idle

	// mu guards conns, latency, failures and lost.
	mu       sync.Mutex
	conns    []*conn
	latency  []int64
	failures map[string]int
	lost     map[string]int
}

// conn is one held connection.
type conn struct {
	nc    net.Conn
	r     io.Reader // nc, or the bytes that came with the handshake answer followed by nc
	idx   int       // global connection index
	every int64     // heartbeat interval, ns
	next  int64     // unix ns of the next heartbeat; only the heartbeat goroutine touches it
	ended atomic.Bool

	// Load modes: the socket's own descriptor (raw: nc was closed and the socket is this duplicate of
	// its descriptor, read by the poller and written with write(2)) and the bytes of an incomplete
	// frame, which only the poller touches once the connection is registered.
	fd      int
	raw     bool
	closed  atomic.Bool
	partial []byte

	// Upstream mode only: slots holds one token per message in flight (its capacity is the window),
	// done closes when the connection ends, backoff is when the sender may go on after a
	// rate_limited error (unix ns).
	slots   chan struct{}
	done    chan struct{}
	backoff atomic.Int64

	// Room mode: whether this connection decodes its room frames' messages.
	sample bool

	// wmu serialises writes: heartbeats and answers to the server's pings.
	wmu sync.Mutex
}

func (c *conn) write(frame []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.raw {
		return rawWrite(c.fd, frame)
	}
	_, err := c.nc.Write(frame)
	return err
}

// close releases the connection's socket.
func (c *conn) close() {
	if !c.raw {
		c.nc.Close()
		return
	}
	if c.closed.CompareAndSwap(false, true) {
		syscall.Close(c.fd)
	}
}

// rawWrite writes all of b to the non-blocking socket fd, waiting a little while the socket is full
// (frames from loadgen are small and rare next to the socket's buffer).
func rawWrite(fd int, b []byte) error {
	deadline := time.Now().Add(5 * time.Second)
	for len(b) > 0 {
		n, err := syscall.Write(fd, b)
		if n > 0 {
			b = b[n:]
			continue
		}
		switch {
		case err == syscall.EINTR:
		case err == syscall.EAGAIN && time.Now().Before(deadline):
			time.Sleep(time.Millisecond)
		case err == syscall.EAGAIN:
			return os.ErrDeadlineExceeded
		case err != nil:
			return err
		default:
			return io.ErrShortWrite
		}
	}
	return nil
}

// runWorker is a worker process's whole life: spec and commands on stdin, events on stdout.
func runWorker(stdin io.Reader, stdout io.Writer, getenv func(string) string) error {
	// Ctrl-C reaches the whole process group; the parent decides when the connections close.
	signal.Ignore(os.Interrupt)

	lines := bufio.NewScanner(stdin)
	lines.Buffer(make([]byte, 64<<10), 1<<20)
	if !lines.Scan() {
		return errors.New("worker: no spec on stdin")
	}
	var spec workerSpec
	if err := json.Unmarshal(lines.Bytes(), &spec); err != nil {
		return fmt.Errorf("worker: spec: %w", err)
	}
	w, err := newWorker(spec, stdout)
	if err != nil {
		return err
	}
	if w.spec.Mode != modeIdle && getenv("GOGC") == "" {
		debug.SetGCPercent(loadGOGC)
	}
	connect, stop := make(chan struct{}), make(chan struct{})
	w.quit = stop
	go func() {
		defer close(stop)
		sawConnect := false
		for lines.Scan() {
			cmd, arg, _ := strings.Cut(strings.TrimSpace(lines.Text()), " ")
			switch cmd {
			case cmdConnect:
				if !sawConnect {
					sawConnect = true
					close(connect)
				}
			case cmdMeasure:
				var m measureCmd
				if err := json.Unmarshal([]byte(arg), &m); err == nil {
					w.measure(m)
				}
			case cmdReport:
				w.report()
			case cmdStop:
				return
			}
		}
	}()

	ctx, cancel := context.WithCancel(context.Background())
	go func() { <-stop; cancel() }()
	start := time.Now()
	w.mint(ctx)
	w.emit(event{Kind: evMinted, Count: w.minted(), Failures: w.takeFailures(), Seconds: time.Since(start).Seconds()})

	select {
	case <-connect:
	case <-stop:
		return nil
	}
	go w.heartbeats(stop)
	start = time.Now()
	w.connectAll(stop)
	w.mu.Lock()
	done := event{Kind: evConnected, Count: len(w.conns), Seconds: time.Since(start).Seconds(), LatencyUS: w.latency}
	w.latency = nil
	if w.spec.Mode != modeIdle {
		for _, c := range w.conns {
			done.Open = append(done.Open, c.idx)
		}
	}
	w.mu.Unlock()
	done.Failures = w.takeFailures()
	w.emit(done)

	<-stop
	w.stopping.Store(true)
	w.senders.Wait()
	w.mu.Lock()
	conns := w.conns
	lost := w.lost
	w.mu.Unlock()
	open := 0
	for _, c := range conns {
		if c.ended.CompareAndSwap(false, true) {
			open++
			if c.done != nil {
				close(c.done)
			}
		}
		c.close()
	}
	w.emit(event{Kind: evFinal, Count: open, Lost: lost})
	return nil
}

func newWorker(spec workerSpec, stdout io.Writer) (*worker, error) {
	w := &worker{spec: spec, out: json.NewEncoder(stdout), failures: map[string]int{}, lost: map[string]int{}}
	w.rec.reset()
	if spec.Mode == "" {
		w.spec.Mode = modeIdle
	}
	if w.spec.Mode != modeIdle {
		p, err := newPoller(w, spec.PollWait)
		if err != nil {
			return nil, fmt.Errorf("worker: epoll: %w", err)
		}
		w.poll = p
	}
	for _, s := range spec.Sources {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return nil, fmt.Errorf("worker: source %q: %w", s, err)
		}
		w.sources = append(w.sources, net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0)))
	}
	if len(w.sources) == 0 {
		return nil, errors.New("worker: no source addresses")
	}
	if spec.Dialers < 1 {
		w.spec.Dialers = 1
	}
	if spec.Minters < 1 {
		w.spec.Minters = 1
	}
	var frame ws.Frame
	switch spec.Ping {
	case "app", "":
		frame = ws.NewTextFrame([]byte(`{"type":"` + wire.TypePing + `"}`))
	case "ws":
		frame = ws.NewPingFrame(nil)
	case "none":
	default:
		return nil, fmt.Errorf("worker: -ping %q: want app, ws or none", spec.Ping)
	}
	if spec.Ping != "none" {
		b, err := ws.CompileFrame(ws.MaskFrame(frame))
		if err != nil {
			return nil, err
		}
		w.ping = b
	}
	return w, nil
}

func (w *worker) emit(e event) {
	e.Worker = w.spec.Index
	w.outMu.Lock()
	defer w.outMu.Unlock()
	_ = w.out.Encode(e)
}

func (w *worker) fail(kind string) {
	w.mu.Lock()
	w.failures[kind]++
	w.mu.Unlock()
}

func (w *worker) takeFailures() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	f := w.failures
	w.failures = map[string]int{}
	return f
}

func (w *worker) minted() int {
	n := 0
	for _, t := range w.tokens {
		if t != "" {
			n++
		}
	}
	return n
}

// mint gets a token for every connection of the share from auth's POST /v1/tokens, Minters at a
// time over kept-alive HTTP connections.
func (w *worker) mint(ctx context.Context) {
	n := w.spec.Share.Count
	w.tokens = make([]string, n)
	if len(w.spec.Targets) == 0 {
		w.urls = make([]string, n)
	}
	tr := &http.Transport{MaxIdleConns: w.spec.Minters, MaxIdleConnsPerHost: w.spec.Minters, IdleConnTimeout: 30 * time.Second}
	defer tr.CloseIdleConnections()
	hc := &http.Client{Transport: tr, Timeout: 15 * time.Second}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range w.spec.Minters {
		wg.Go(func() {
			for {
				k := int(next.Add(1) - 1)
				if k >= n || ctx.Err() != nil {
					return
				}
				uid, device := identity(w.spec.UIDPrefix, w.spec.Share.First+k, w.spec.UIDs)
				tok, url, err := mintToken(ctx, hc, w.spec.AuthURL, w.spec.APIKey, uid, device)
				if err != nil {
					w.fail(mintFailure(err))
					continue
				}
				w.tokens[k] = tok
				if w.urls != nil {
					w.urls[k] = url
				}
			}
		})
	}
	wg.Wait()
}

// mintFailure is the failure kind of a refused or failed token request.
func mintFailure(err error) string {
	var apiErr *client.APIError
	if errors.As(err, &apiErr) {
		if apiErr.Code != "" {
			return fmt.Sprintf("mint_http_%d_%s", apiErr.Status, apiErr.Code)
		}
		return fmt.Sprintf("mint_http_%d", apiErr.Status)
	}
	return failureKind("mint", err)
}

// mintToken asks auth for a token for uid's device with the API key.
func mintToken(ctx context.Context, hc *http.Client, authURL, apiKey, uid, device string) (token, wsURL string, err error) {
	s, err := client.MintTokenWith(ctx, hc, authURL, apiKey, uid, device)
	if err != nil {
		return "", "", err
	}
	if strings.ContainsAny(s.Token, "\r\n") {
		return "", "", errors.New("mint token: no usable token in the answer")
	}
	return s.Token, s.WSURL, nil
}

// connectAll opens every connection that has a token, at most Dialers at a time and Rate a second,
// reporting progress every second, until all were tried or stop closes.
func (w *worker) connectAll(stop <-chan struct{}) {
	jobs := make(chan int)
	go func() {
		defer close(jobs)
		start := time.Now()
		sent := 0
		for k, tok := range w.tokens {
			if tok == "" {
				continue
			}
			if w.spec.Rate > 0 {
				due := start.Add(time.Duration(float64(sent) / w.spec.Rate * float64(time.Second)))
				if d := time.Until(due); d > 0 {
					select {
					case <-time.After(d):
					case <-stop:
						return
					}
				}
			}
			select {
			case jobs <- k:
				sent++
			case <-stop:
				return
			}
		}
	}()

	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				w.mu.Lock()
				n := len(w.conns)
				w.mu.Unlock()
				w.emit(event{Kind: evProgress, Count: n})
			}
		}
	}()

	var wg sync.WaitGroup
	for range w.spec.Dialers {
		wg.Go(func() {
			for k := range jobs {
				w.open(k)
			}
		})
	}
	wg.Wait()
	close(done)
}

// open makes connection k: TCP connect from its source address, WebSocket upgrade with its token,
// the welcome frame; then it starts the connection's reader.
func (w *worker) open(k int) {
	i := w.spec.Share.First + k
	url := ""
	if w.urls != nil {
		url = w.urls[k]
	} else {
		url = w.spec.Targets[pick(i, len(w.spec.Targets))]
	}
	nd := &net.Dialer{LocalAddr: w.sources[pick(i, len(w.sources))]}
	var connectErr error
	d := ws.Dialer{
		Timeout: w.spec.DialTimeout,
		Header:  ws.HandshakeHeaderString("Authorization: Bearer " + w.tokens[k] + "\r\n"),
		NetDial: func(ctx context.Context, network, addr string) (net.Conn, error) {
			nc, err := nd.DialContext(ctx, network, addr)
			connectErr = err
			return nc, err
		},
	}
	start := time.Now()
	// A context that is never done keeps gobwas from starting a watcher goroutine per dial; Timeout
	// bounds the connect and the handshake.
	nc, br, _, err := d.Dial(context.Background(), url)
	if err != nil {
		if connectErr != nil {
			w.fail(failureKind("connect", connectErr))
		} else {
			w.fail(failureKind("handshake", err))
		}
		return
	}
	w.tokens[k] = "" // not needed any more

	var r io.Reader = nc
	var prefix *bytes.Reader
	if br != nil {
		// The welcome may have come in the same read as the handshake answer; it then sits in br,
		// which goes back to gobwas's pool.
		b := make([]byte, br.Buffered())
		_, _ = io.ReadFull(br, b)
		ws.PutReader(br)
		prefix = bytes.NewReader(b)
		r = io.MultiReader(prefix, nc)
	}
	_ = nc.SetReadDeadline(start.Add(w.spec.DialTimeout))
	hb, err := readWelcome(r)
	if err != nil {
		nc.Close()
		w.fail(err.Error())
		return
	}
	_ = nc.SetReadDeadline(time.Time{})
	if prefix != nil && prefix.Len() == 0 {
		r = nc
	}
	every := w.spec.PingEvery
	if every <= 0 {
		every = time.Duration(hb) * time.Second
	}
	if every <= 0 {
		every = 30 * time.Second
	}
	now := time.Now()
	c := &conn{nc: nc, r: r, idx: i, every: int64(every), next: now.Add(every).UnixNano()}
	if w.spec.Mode == modeRoom {
		c.sample = w.spec.SampleEvery > 0 && i%w.spec.SampleEvery == 0
		join := fmt.Appendf(nil, `{"type":"join","room":"%s-%d"}`, w.spec.RoomPrefix, i%max(1, w.spec.Rooms))
		if _, err := nc.Write(appendMaskedText(nil, join, ws.NewMask())); err != nil {
			nc.Close()
			w.fail(failureKind("join", err))
			return
		}
		if c.sample {
			w.rec.mu.Lock()
			w.rec.res.Sampled++
			w.rec.mu.Unlock()
		}
	}
	if w.spec.Mode == modeUpstream {
		c.slots = make(chan struct{}, max(1, w.spec.Window))
		c.done = make(chan struct{})
	}
	if w.poll != nil {
		var leftover []byte
		if prefix != nil && prefix.Len() > 0 {
			leftover = make([]byte, prefix.Len())
			_, _ = prefix.Read(leftover)
		}
		if err := w.poll.add(c, leftover); err != nil {
			nc.Close()
			w.fail(failureKind("poll", err))
			return
		}
	}
	w.mu.Lock()
	w.conns = append(w.conns, c)
	w.latency = append(w.latency, now.Sub(start).Microseconds())
	w.mu.Unlock()
	if w.poll == nil {
		go w.read(c)
	}
}

// welcomeError is a failed welcome; its text is the failure kind.
type welcomeError string

func (e welcomeError) Error() string { return string(e) }

// readWelcome reads the first frame and returns the heartbeat it announces.
func readWelcome(r io.Reader) (heartbeatS int, err error) {
	buf := make([]byte, 2048)
	h, p, err := readFrame(r, buf)
	if err != nil {
		return 0, welcomeError(failureKind("welcome", err))
	}
	if h.OpCode == ws.OpClose {
		code, _ := ws.ParseCloseFrameDataUnsafe(p)
		return 0, welcomeError(fmt.Sprintf("welcome_closed_%d", code))
	}
	var wl wire.Welcome
	if p == nil || json.Unmarshal(p, &wl) != nil || wl.Type != wire.TypeWelcome {
		return 0, welcomeError("welcome_bad_frame")
	}
	return wl.HeartbeatS, nil
}

// readFrame reads one frame. Its payload lands in buf after the first 12 bytes (the header's room);
// a payload that does not fit is read and dropped, and p is then nil.
func readFrame(r io.Reader, buf []byte) (h ws.Header, p []byte, err error) {
	const hdr = ws.MaxHeaderSize - 2
	h, err = ws.ReadHeaderBuffer(r, buf[:2:hdr])
	if err != nil {
		return h, nil, err
	}
	room := buf[hdr:]
	if h.Length > int64(len(room)) {
		_, err = io.CopyN(io.Discard, r, h.Length)
		return h, nil, err
	}
	p = room[:h.Length]
	if _, err = io.ReadFull(r, p); err != nil {
		return h, nil, err
	}
	if h.Masked {
		ws.Cipher(p, h.Mask, 0)
	}
	return h, p, nil
}

// read consumes what the server sends until the connection ends, answering WebSocket pings. Idle,
// its buffer holds any control frame and other frames are dropped unread; in the load modes it holds
// the frames they send too, and hands them to the recorder.
func (w *worker) read(c *conn) {
	size := 125
	if w.spec.Mode != modeIdle {
		size = 1024
	}
	buf := make([]byte, ws.MaxHeaderSize-2+size)
	for {
		h, p, err := readFrame(c.r, buf)
		if err != nil {
			w.end(c, failureKind("read", err))
			return
		}
		if w.spec.Mode != modeIdle && (h.OpCode == ws.OpText || h.OpCode == ws.OpBinary) {
			w.onFrame(c, p, time.Now().UnixNano())
			continue
		}
		switch h.OpCode {
		case ws.OpClose:
			code, _ := ws.ParseCloseFrameDataUnsafe(p)
			w.end(c, fmt.Sprintf("closed_%d", code))
			return
		case ws.OpPing:
			pong, _ := ws.CompileFrame(ws.MaskFrame(ws.NewPongFrame(p)))
			_ = c.write(pong)
		}
	}
}

// end records why c ended, unless the worker is stopping (then it is this side that closed it).
func (w *worker) end(c *conn, kind string) {
	if !c.ended.CompareAndSwap(false, true) {
		return
	}
	if w.poll != nil && c.raw {
		w.poll.forget(c)
	}
	c.close()
	if c.done != nil {
		close(c.done)
	}
	if w.stopping.Load() {
		return
	}
	w.mu.Lock()
	w.lost[kind]++
	w.mu.Unlock()
}

// heartbeats sends every connection its ping when due, checking once a second, until stop closes.
func (w *worker) heartbeats(stop <-chan struct{}) {
	if w.ping == nil {
		return
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case now := <-t.C:
			w.mu.Lock()
			conns := w.conns // only ever appended to: the elements seen here stay as they are
			w.mu.Unlock()
			ns := now.UnixNano()
			for _, c := range conns {
				if c.ended.Load() || ns < c.next {
					continue
				}
				c.next += c.every
				if c.next < ns {
					c.next = ns + c.every
				}
				if err := c.write(w.ping); err != nil {
					w.end(c, failureKind("write", err))
				}
			}
		}
	}
}
