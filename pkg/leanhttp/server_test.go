package leanhttp

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/wire"
)

// start serves h on a loopback port until the test ends and returns the server and its address.
func start(t testing.TB, h http.Handler, tune func(*Server)) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Handler: h, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if tune != nil {
		tune(s)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		s.Shutdown(ctx)
		if err := <-served; !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve returned %v, want http.ErrServerClosed", err)
		}
	})
	return s, ln.Addr().String()
}

// echo answers with the method, path and body it was sent, as JSON.
var echo = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]string{"method": r.Method, "path": r.URL.Path, "body": string(b)})
})

// rawConn is a client speaking HTTP by hand, to see exactly what the server sends.
type rawConn struct {
	t testing.TB
	net.Conn
	r *bufio.Reader
}

func dial(t testing.TB, addr string) *rawConn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return &rawConn{t: t, Conn: c, r: bufio.NewReader(c)}
}

func (c *rawConn) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c, s); err != nil {
		c.t.Fatal(err)
	}
}

// answer reads one answer to a request with the given method, and its body.
func (c *rawConn) answer(method string) (*http.Response, string) {
	c.t.Helper()
	resp, err := http.ReadResponse(c.r, &http.Request{Method: method})
	if err != nil {
		c.t.Fatalf("read answer: %v", err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("read answer body: %v", err)
	}
	return resp, string(b)
}

// closed reports whether the server closed the connection (nothing more to read).
func (c *rawConn) closed() bool {
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := c.r.ReadByte()
	return err != nil && !isTimeout(err)
}

func errorCode(t testing.TB, body string) string {
	t.Helper()
	var e wire.ErrorBody
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		t.Fatalf("error body %q is not Herald's JSON error: %v", body, err)
	}
	return e.Error.Code
}

func TestKeepAliveWithNetHTTPClient(t *testing.T) {
	_, addr := start(t, echo, nil)
	var reused atomic.Int32
	trace := &httptrace.ClientTrace{GotConn: func(i httptrace.GotConnInfo) {
		if i.Reused {
			reused.Add(1)
		}
	}}
	for i := range 5 {
		req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), http.MethodPost, "http://"+addr+"/p", strings.NewReader(fmt.Sprint("body ", i)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var got map[string]string
		if err := json.NewDecoder(resp.Body).Decode(&got); err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 || got["body"] != fmt.Sprint("body ", i) || got["path"] != "/p" || got["method"] != "POST" {
			t.Fatalf("call %d: %d %v", i, resp.StatusCode, got)
		}
		if resp.Header.Get("Date") == "" || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("answer header %v: want Date and the handler's Content-Type", resp.Header)
		}
	}
	if reused.Load() != 4 {
		t.Fatalf("%d of 4 later calls reused the connection", reused.Load())
	}
	http.DefaultClient.CloseIdleConnections()
}

func TestPipelinedRequestsAnsweredInOrder(t *testing.T) {
	_, addr := start(t, echo, nil)
	c := dial(t, addr)
	c.send("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1" +
		"POST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n22\r\n0\r\n\r\n" +
		"GET /c HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{`"path":"/a"`, `"body":"22"`, `"path":"/c"`} {
		resp, body := c.answer("POST")
		if resp.StatusCode != 200 || !strings.Contains(body, want) || resp.Close {
			t.Fatalf("answer %d %q close=%v, want 200 with %s on an open connection", resp.StatusCode, body, resp.Close, want)
		}
	}
}

func TestUnreadableRequests(t *testing.T) {
	for _, tc := range []struct {
		name, request string
		status        int
		code          string
	}{
		{"garbage", "HELLO\r\n\r\n", 400, "invalid_request"},
		{"bad header line", "GET / HTTP/1.1\r\nHost: x\r\nno colon\r\n\r\n", 400, "invalid_request"},
		{"no host", "GET / HTTP/1.1\r\n\r\n", 400, "invalid_request"},
		{"http2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400, "invalid_request"},
		{"bad content length", "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -3\r\n\r\n", 400, "invalid_request"},
		{"header too large", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 8<<10) + "\r\n\r\n", 431, "header_too_large"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := start(t, echo, func(s *Server) { s.MaxHeaderBytes = 2 << 10 })
			c := dial(t, addr)
			c.send(tc.request)
			resp, body := c.answer("GET")
			if resp.StatusCode != tc.status || errorCode(t, body) != tc.code || !resp.Close {
				t.Fatalf("answered %d %s close=%v, want %d %s and Connection: close", resp.StatusCode, body, resp.Close, tc.status, tc.code)
			}
			if !c.closed() {
				t.Fatal("connection left open after an unreadable request")
			}
		})
	}
}

func TestHeaderUnderTheLimitIsServed(t *testing.T) {
	_, addr := start(t, echo, func(s *Server) { s.MaxHeaderBytes = 2 << 10 })
	c := dial(t, addr)
	// Several: the limit applies to each request, not to the connection's life.
	for range 5 {
		c.send("GET /ok HTTP/1.1\r\nHost: x\r\nX-Fill: " + strings.Repeat("a", 1500) + "\r\n\r\n")
		if resp, body := c.answer("GET"); resp.StatusCode != 200 {
			t.Fatalf("answered %d %s", resp.StatusCode, body)
		}
	}
	// And it is still enforced on a later request.
	c.send("GET /big HTTP/1.1\r\nHost: x\r\nX-Fill: " + strings.Repeat("a", 8<<10) + "\r\n\r\n")
	if resp, body := c.answer("GET"); resp.StatusCode != 431 {
		t.Fatalf("oversized later request answered %d %s, want 431", resp.StatusCode, body)
	}
}

func TestExpectContinue(t *testing.T) {
	refuse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("X-Refuse") != "" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		echo(w, r)
	})
	_, addr := start(t, refuse, nil)

	t.Run("read body", func(t *testing.T) {
		c := dial(t, addr)
		c.send("POST /e HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		line, err := c.r.ReadString('\n')
		if err != nil || line != "HTTP/1.1 100 Continue\r\n" {
			t.Fatalf("first line %q (%v), want 100 Continue before the body is sent", line, err)
		}
		if blank, _ := c.r.ReadString('\n'); blank != "\r\n" {
			t.Fatalf("100 Continue followed by %q", blank)
		}
		c.send("hello")
		resp, body := c.answer("POST")
		if resp.StatusCode != 200 || !strings.Contains(body, `"body":"hello"`) || resp.Close {
			t.Fatalf("answered %d %q close=%v", resp.StatusCode, body, resp.Close)
		}
	})
	t.Run("refused unread", func(t *testing.T) {
		c := dial(t, addr)
		c.send("POST /e HTTP/1.1\r\nHost: x\r\nX-Refuse: 1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
		resp, _ := c.answer("POST")
		if resp.StatusCode != http.StatusUnauthorized || !resp.Close {
			t.Fatalf("answered %d close=%v, want 401 and Connection: close without asking for the body", resp.StatusCode, resp.Close)
		}
	})
	t.Run("curl style", func(t *testing.T) {
		// net/http's client sends Expect and waits for 100 (or the answer) before the body.
		// The client would wait far longer than its own timeout for a 100 that never came.
		tr := &http.Transport{ExpectContinueTimeout: time.Minute}
		defer tr.CloseIdleConnections()
		req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/e", strings.NewReader(strings.Repeat("b", 3000)))
		req.Header.Set("Expect", "100-continue")
		resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), strings.Repeat("b", 3000)) {
			t.Fatalf("answered %d %.80q", resp.StatusCode, b)
		}
	})
}

func TestHeadAndBodilessStatuses(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		case "/declared":
			w.Header().Set("Content-Length", "42")
		case "/injected":
			w.Header().Set("Content-Length", "5\r\nX-Injected: yes")
		case "/informational":
			w.WriteHeader(http.StatusContinue) // not sent: the final answer is what counts
			io.WriteString(w, "twelve bytes")
		default:
			io.WriteString(w, "twelve bytes")
		}
	})
	_, addr := start(t, h, nil)
	c := dial(t, addr)
	c.send("HEAD /x HTTP/1.1\r\nHost: x\r\n\r\nGET /204 HTTP/1.1\r\nHost: x\r\n\r\nGET /304 HTTP/1.1\r\nHost: x\r\n\r\nGET /x HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := c.answer("HEAD")
	if resp.StatusCode != 200 || resp.ContentLength != 12 || body != "" {
		t.Fatalf("HEAD: %d length %d body %q, want 200, the GET's length, no body", resp.StatusCode, resp.ContentLength, body)
	}
	for _, want := range []int{204, 304} {
		resp, body := c.answer("GET")
		if resp.StatusCode != want || body != "" || resp.Header.Get("Content-Length") != "" {
			t.Fatalf("answered %d with Content-Length %q body %q, want %d without either", resp.StatusCode, resp.Header.Get("Content-Length"), body, want)
		}
	}
	// The last answer parses where the bodiless ones ended: nothing stray was written.
	if resp, body := c.answer("GET"); resp.StatusCode != 200 || body != "twelve bytes" || resp.Header.Get("Content-Type") == "" {
		t.Fatalf("answered %d %q %v, want 200 twelve bytes with a sniffed Content-Type", resp.StatusCode, body, resp.Header)
	}
	c.send("HEAD /declared HTTP/1.1\r\nHost: x\r\n\r\nHEAD /204 HTTP/1.1\r\nHost: x\r\n\r\n" +
		"HEAD /injected HTTP/1.1\r\nHost: x\r\n\r\nGET /informational HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := c.answer("HEAD"); resp.ContentLength != 42 {
		t.Fatalf("HEAD with a declared length: Content-Length %d, want 42", resp.ContentLength)
	}
	if resp, _ := c.answer("HEAD"); resp.Header.Get("Content-Length") != "" {
		t.Fatalf("HEAD of a bodiless status states a length: %v", resp.Header)
	}
	if resp, _ := c.answer("HEAD"); resp.Header.Get("X-Injected") != "" || resp.Header.Get("Content-Length") != "" {
		t.Fatalf("a handler's malformed Content-Length reached the wire: %v", resp.Header)
	}
	if resp, body := c.answer("GET"); resp.StatusCode != 200 || body != "twelve bytes" {
		t.Fatalf("after WriteHeader(100): %d %q, want the final 200", resp.StatusCode, body)
	}
}

func TestHTTP10(t *testing.T) {
	_, addr := start(t, echo, nil)
	t.Run("closes by default", func(t *testing.T) {
		c := dial(t, addr)
		c.send("GET /old HTTP/1.0\r\n\r\n")
		resp, body := c.answer("GET")
		if resp.StatusCode != 200 || !strings.Contains(body, "/old") || !resp.Close || !c.closed() {
			t.Fatalf("answered %d %q close=%v", resp.StatusCode, body, resp.Close)
		}
	})
	t.Run("keep-alive asked", func(t *testing.T) {
		c := dial(t, addr)
		for range 2 {
			c.send("GET /old HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
			resp, _ := c.answer("GET")
			if resp.StatusCode != 200 || resp.Close || resp.Header.Get("Connection") != "keep-alive" {
				t.Fatalf("answered %d close=%v Connection %q", resp.StatusCode, resp.Close, resp.Header.Get("Connection"))
			}
		}
	})
}

func TestConnectionClose(t *testing.T) {
	closing := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/bye" {
			w.Header().Set("Connection", "close")
		}
	})
	_, addr := start(t, closing, nil)
	t.Run("client asks", func(t *testing.T) {
		c := dial(t, addr)
		c.send("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
		if resp, _ := c.answer("GET"); !resp.Close || !c.closed() {
			t.Fatal("connection kept after the client asked to close it")
		}
	})
	t.Run("handler asks", func(t *testing.T) {
		c := dial(t, addr)
		c.send("GET /bye HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, _ := c.answer("GET"); !resp.Close || !c.closed() {
			t.Fatal("connection kept after the handler asked to close it")
		}
	})
}

func TestUnreadBody(t *testing.T) {
	ignore := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ignored") })
	_, addr := start(t, ignore, nil)
	t.Run("small is drained", func(t *testing.T) {
		c := dial(t, addr)
		c.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
		for range 2 {
			if resp, body := c.answer("POST"); resp.StatusCode != 200 || body != "ignored" || resp.Close {
				t.Fatalf("answered %d %q close=%v: the next request must start after the unread body", resp.StatusCode, body, resp.Close)
			}
		}
	})
	t.Run("large closes", func(t *testing.T) {
		c := dial(t, addr)
		n := maxDrain + 100<<10
		c.send(fmt.Sprintf("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", n))
		go io.WriteString(c, strings.Repeat("z", n)) // the server may stop reading: do not block on it
		if resp, _ := c.answer("POST"); resp.StatusCode != 200 || !resp.Close {
			t.Fatalf("answered %d close=%v, want Connection: close rather than reading a large unread body", resp.StatusCode, resp.Close)
		}
	})
}

func TestTimeouts(t *testing.T) {
	// Each case shortens only the timeout it names: the others would close the connection too.
	const short, long = 200 * time.Millisecond, time.Minute
	for _, tc := range []struct {
		name     string
		tune     func(*Server)
		talk     func(*rawConn)
		answered bool // the handler saw the read fail and answered
	}{
		{"idle after a request", func(s *Server) { s.IdleTimeout = short }, func(c *rawConn) {
			c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			c.answer("GET")
		}, false},
		{"new and silent", func(s *Server) { s.ReadHeaderTimeout = short }, func(*rawConn) {}, false},
		{"slow header", func(s *Server) { s.ReadHeaderTimeout = short }, func(c *rawConn) {
			c.send("GET / HTTP/1.1\r\nHost: x\r\n")
		}, false},
		{"slow body", func(s *Server) { s.ReadTimeout = short }, func(c *rawConn) {
			c.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n01234")
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := start(t, echo, func(s *Server) {
				s.IdleTimeout, s.ReadHeaderTimeout, s.ReadTimeout = long, long, long
				tc.tune(s)
			})
			c := dial(t, addr)
			tc.talk(c)
			if tc.answered {
				if resp, _ := c.answer("POST"); resp.StatusCode != http.StatusBadRequest || !resp.Close {
					t.Fatalf("answered %d close=%v, want the handler's 400 and Connection: close", resp.StatusCode, resp.Close)
				}
			}
			if !c.closed() {
				t.Fatal("connection still open long after the timeout")
			}
		})
	}
}

// big answers with 64 KiB, more than the connection's write buffer.
var big = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/big" {
		w.Write([]byte(strings.Repeat("x", 64<<10)))
	}
})

func TestWriteTimeout(t *testing.T) {
	t.Run("per answer, not per connection", func(t *testing.T) {
		_, addr := start(t, big, func(s *Server) { s.WriteTimeout = 200 * time.Millisecond })
		c := dial(t, addr)
		c.send("GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
		c.answer("GET")
		time.Sleep(400 * time.Millisecond) // longer than WriteTimeout: the last deadline has passed
		c.send("GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
		if resp, body := c.answer("GET"); resp.StatusCode != 200 || len(body) != 64<<10 {
			t.Fatalf("answered %d with %d bytes", resp.StatusCode, len(body))
		}
	})
	t.Run("a client that does not read", func(t *testing.T) {
		s, addr := start(t, big, func(s *Server) { s.WriteTimeout = 200 * time.Millisecond })
		c := dial(t, addr)
		// Enough pipelined requests that the answers overflow every socket buffer between us.
		c.send(strings.Repeat("GET /big HTTP/1.1\r\nHost: x\r\n\r\n", 400))
		time.Sleep(500 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		// The stuck write gave up at its deadline, so the connection is gone and nothing is left.
		if err := s.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v: a connection is still stuck writing", err)
		}
	})
}

func TestBodyCloseKeepsTheConnection(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer r.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(r.Body, 2))
		r.Body.Close()
		if _, err := r.Body.Read(make([]byte, 1)); err != http.ErrBodyReadAfterClose {
			t.Errorf("read after Close: %v", err)
		}
		w.Write(b)
	})
	_, addr := start(t, h, nil)
	c := dial(t, addr)
	for range 3 {
		c.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabcdef")
		if resp, body := c.answer("POST"); resp.StatusCode != 200 || body != "ab" || resp.Close {
			t.Fatalf("answered %d %q close=%v, want ab and the connection kept (the rest drained)", resp.StatusCode, body, resp.Close)
		}
	}
}

func TestLargeUnreadBodyStillGetsItsAnswer(t *testing.T) {
	// The handler refuses without reading 8 MiB; the client is still sending when the server
	// closes. Without a lingering close the kernel resets the connection and the answer is lost.
	refuse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusRequestEntityTooLarge) })
	_, addr := start(t, refuse, nil)
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: 10 * time.Second}
	for i := range 5 {
		resp, err := client.Post("http://"+addr+"/", "application/octet-stream", strings.NewReader(strings.Repeat("z", 8<<20)))
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("call %d answered %d", i, resp.StatusCode)
		}
	}
}

func TestEmptyLinesBeforeARequestAndBadHosts(t *testing.T) {
	_, addr := start(t, echo, nil)
	c := dial(t, addr)
	c.send("POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\n1\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
	for _, want := range []string{"/a", "/b"} {
		if resp, body := c.answer("GET"); resp.StatusCode != 200 || !strings.Contains(body, want) {
			t.Fatalf("answered %d %q, want %s: a stray CRLF between requests is skipped", resp.StatusCode, body, want)
		}
	}
	c = dial(t, addr)
	c.send("GET / HTTP/1.1\r\nHost: a b/c\r\n\r\n")
	if resp, body := c.answer("GET"); resp.StatusCode != 400 || errorCode(t, body) != "invalid_request" {
		t.Fatalf("malformed Host answered %d %q", resp.StatusCode, body)
	}
}

func TestPanicAnswers500AndServerGoesOn(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			w.Header().Set("X-Half", "written")
			io.WriteString(w, "half an answer")
			panic("boom")
		case "/abort":
			panic(http.ErrAbortHandler)
		}
		io.WriteString(w, "fine")
	})
	_, addr := start(t, h, nil)
	c := dial(t, addr)
	c.send("GET /panic HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, body := c.answer("GET")
	if resp.StatusCode != 500 || errorCode(t, body) != "internal" || resp.Header.Get("X-Half") != "" || !resp.Close {
		t.Fatalf("answered %d %q %v, want a clean JSON 500 and Connection: close", resp.StatusCode, body, resp.Header)
	}
	c = dial(t, addr)
	c.send("GET /abort HTTP/1.1\r\nHost: x\r\n\r\n")
	if !c.closed() {
		t.Fatal("connection kept after http.ErrAbortHandler")
	}
	c = dial(t, addr)
	c.send("GET /after HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, body := c.answer("GET"); resp.StatusCode != 200 || body != "fine" {
		t.Fatalf("after the panics: %d %q", resp.StatusCode, body)
	}
}

func TestRequestContextEndsWithTheCall(t *testing.T) {
	got := make(chan *http.Request, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Context().Err() != nil {
			w.WriteHeader(http.StatusInternalServerError)
		}
		got <- r
	})
	_, addr := start(t, h, nil)
	c := dial(t, addr)
	c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	if resp, _ := c.answer("GET"); resp.StatusCode != 200 {
		t.Fatalf("the context was already done in the handler (%d)", resp.StatusCode)
	}
	r := <-got
	if r.Context().Err() == nil {
		t.Fatal("the request's context is still live after its answer")
	}
	if host, _, err := net.SplitHostPort(r.RemoteAddr); err != nil || host != "127.0.0.1" {
		t.Fatalf("RemoteAddr %q", r.RemoteAddr)
	}
}

func TestShutdownFinishesCallsInFlight(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		io.WriteString(w, "done")
	})
	s, addr := start(t, h, nil)
	idle := dial(t, addr)
	idle.send("GET /quick HTTP/1.1\r\nHost: x\r\n\r\n")
	idle.answer("GET")
	busy := dial(t, addr)
	busy.send("GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	<-entered

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	if !idle.closed() {
		t.Fatal("idle connection kept open by Shutdown")
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Fatal("a new connection was accepted after Shutdown")
	}
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned (%v) before the call in flight was answered", err)
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	resp, body := busy.answer("GET")
	if resp.StatusCode != 200 || body != "done" || !resp.Close {
		t.Fatalf("call in flight answered %d %q close=%v, want its answer with Connection: close", resp.StatusCode, body, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestShutdownDeadlineCancelsCalls(t *testing.T) {
	entered, returned := make(chan struct{}), make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-r.Context().Done() // a call that only ends when told to
		close(returned)
	})
	s, addr := start(t, h, nil)
	c := dial(t, addr)
	c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want the deadline's error", err)
	}
	if !c.closed() {
		t.Fatal("connection open after Shutdown gave up on it")
	}
	select {
	case <-returned:
	case <-time.After(5 * time.Second):
		t.Fatal("the call's context was not canceled when Shutdown gave up")
	}
}

func TestShutdownServesANewConnectionsFirstRequest(t *testing.T) {
	s, addr := start(t, echo, nil)
	c := dial(t, addr)
	// Accepted, but its request not yet sent: Shutdown must not fail a call nobody refused.
	time.Sleep(50 * time.Millisecond)
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	time.Sleep(50 * time.Millisecond)
	c.send("POST /late HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
	resp, body := c.answer("POST")
	if resp.StatusCode != 200 || !strings.Contains(body, `"body":"ok"`) || !resp.Close {
		t.Fatalf("answered %d %q close=%v, want the answer with Connection: close", resp.StatusCode, body, resp.Close)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

func TestCallOutlivesItsCallerHangingUp(t *testing.T) {
	entered, release, finished := make(chan struct{}), make(chan struct{}), make(chan error, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
		finished <- r.Context().Err()
	})
	_, addr := start(t, h, nil)
	c := dial(t, addr)
	c.send("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
	<-entered
	c.Close()
	time.Sleep(50 * time.Millisecond) // the hang-up has reached the server
	close(release)
	if err := <-finished; err != nil {
		t.Fatalf("the call's context ended when its caller hung up: %v", err)
	}
}
