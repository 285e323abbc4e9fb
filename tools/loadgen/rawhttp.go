package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// rawCaller is one push API caller's own keep-alive connection, written and read by the calling
// goroutine alone. net/http's client hands every request to a writer goroutine and every answer to a
// reader goroutine: three wake-ups per call, which on a 2-core machine shared with the servers
// cost more CPU than the servers' own work per call. This keeps the measurement's footprint small; the
// servers see ordinary HTTP/1.1 requests either way.
type rawCaller struct {
	addr, host, path, auth string
	timeout                time.Duration
	conn                   net.Conn
	br                     *bufio.Reader
	req                    []byte
}

func newRawCaller(rawURL, apiKey string, timeout time.Duration) (*rawCaller, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, err
	}
	if u.Scheme != "http" {
		return nil, fmt.Errorf("%s: only http:// URLs are supported by the load generator's caller", rawURL)
	}
	return &rawCaller{addr: u.Host, host: u.Host, path: u.RequestURI(), auth: "Bearer " + apiKey, timeout: timeout}, nil
}

// post sends body and returns the answer's body (valid until the next call) and a failure kind ("" on
// 200), as apiCall does.
func (c *rawCaller) post(body []byte, buf *bytes.Buffer) ([]byte, string) {
	return c.postTo(c.path, body, buf)
}

// postTo is post to another path of the same server, over the same connection.
func (c *rawCaller) postTo(path string, body []byte, buf *bytes.Buffer) ([]byte, string) {
	if c.conn == nil {
		conn, err := net.DialTimeout("tcp", c.addr, c.timeout)
		if err != nil {
			return nil, failureKind("http", err)
		}
		c.conn, c.br = conn, bufio.NewReaderSize(conn, 16<<10)
	}
	c.req = append(c.req[:0], "POST "...)
	c.req = append(c.req, path...)
	c.req = append(c.req, " HTTP/1.1\r\nHost: "...)
	c.req = append(c.req, c.host...)
	c.req = append(c.req, "\r\nContent-Type: application/json\r\nAuthorization: "...)
	c.req = append(c.req, c.auth...)
	c.req = append(c.req, "\r\nContent-Length: "...)
	c.req = strconv.AppendInt(c.req, int64(len(body)), 10)
	c.req = append(c.req, "\r\n\r\n"...)
	c.req = append(c.req, body...)
	_ = c.conn.SetDeadline(time.Now().Add(c.timeout))
	if _, err := c.conn.Write(c.req); err != nil {
		c.close()
		return nil, failureKind("http", err)
	}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		c.close()
		return nil, failureKind("http", err)
	}
	buf.Reset()
	_, err = buf.ReadFrom(io.LimitReader(resp.Body, 4<<20))
	resp.Body.Close()
	if err != nil {
		c.close()
		return nil, failureKind("http_read", err)
	}
	if resp.Close {
		c.close()
	}
	return buf.Bytes(), answerFailure(resp.StatusCode, buf.Bytes())
}

func (c *rawCaller) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn, c.br = nil, nil
	}
}
