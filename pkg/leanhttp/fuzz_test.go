package leanhttp

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

// FuzzServe sends arbitrary bytes as one client's whole conversation: whatever they are, the server
// answers in HTTP or closes, and never panics or leaves the client waiting.
func FuzzServe(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc",
		"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
		"POST /p HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nshort",
		"POST /p HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nab",
		"HEAD / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.1\r\nHost: y\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 2\r\n\r\n",
		"GET / HTTP/9.9\r\n\r\n",
		"\r\n\r\n\r\n",
	} {
		f.Add(seed)
	}
	_, addr := start(f, echo, func(s *Server) {
		s.MaxHeaderBytes = 1 << 10
		s.ReadHeaderTimeout, s.ReadTimeout = time.Second, time.Second
	})
	f.Fuzz(func(t *testing.T, conversation string) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		go func() {
			io.WriteString(c, conversation)
			c.(*net.TCPConn).CloseWrite()
		}()
		got, err := io.ReadAll(c)
		if err != nil && !strings.Contains(err.Error(), "reset") {
			t.Fatalf("reading the answers: %v (after %q)", err, got)
		}
		if len(got) > 0 && !strings.HasPrefix(string(got), "HTTP/1.1 ") {
			t.Fatalf("answer is not HTTP: %q", got)
		}
	})
}
