// Package apiclient calls Herald's HTTP APIs the way a program does: the push-servers' internal API
// (NodeClient) and push-route's internal API (RouteClient), both with the shared internal secret, and
// push-route's public push API (PushClient) with an API key. Every answer other than 2xx becomes an
// *Error read from Herald's JSON error body (wire.ErrorBody), whoever the caller is.
package apiclient

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/heraldpush/herald/pkg/wire"
)

// Error is an answer of a Herald HTTP API other than 2xx.
type Error struct {
	Status  int
	Code    string // the snake_case code of the JSON error body; empty when the body was not one
	Message string
	// RetryAfter is the answer's Retry-After header (429 and 503), zero when absent.
	RetryAfter time.Duration
}

func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("http %d: %s", e.Status, e.Message)
	}
	return fmt.Sprintf("http %d %s: %s", e.Status, e.Code, e.Message)
}

// maxErrorBody bounds how much of an error answer is read; a JSON error is far smaller.
const maxErrorBody = 64 << 10

// ReadError reads resp's body as an error answer. It does not close the body.
func ReadError(resp *http.Response) *Error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	e := ParseError(resp.StatusCode, body)
	e.RetryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return e
}

// ParseError reads a Herald error body. Anything else (a proxy's HTML page, say) keeps its start as
// the message, so a status is never reported without a hint.
func ParseError(status int, body []byte) *Error {
	var eb wire.ErrorBody
	if err := json.Unmarshal(body, &eb); err == nil && eb.Error.Code != "" {
		return &Error{Status: status, Code: eb.Error.Code, Message: eb.Error.Message}
	}
	msg := strings.TrimSpace(string(body))
	if len(msg) > 200 {
		msg = msg[:200]
	}
	if msg == "" {
		msg = http.StatusText(status)
	}
	return &Error{Status: status, Message: msg}
}

// parseRetryAfter reads either form RFC 9110 allows: delay seconds or an HTTP date.
func parseRetryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if secs, err := strconv.Atoi(v); err == nil {
		if secs <= 0 {
			return 0
		}
		return time.Duration(secs) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// NewTransport returns a transport for calls inside a Herald cluster: they go straight to the other
// service, never through an HTTP_PROXY meant for the outside, and keep up to idlePerHost connections
// per peer alive, since internal calls are frequent and small and a new TCP connection would cost more
// than the call.
func NewTransport(idlePerHost int) *http.Transport {
	return &http.Transport{
		Proxy:               nil,
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        1024,
		MaxIdleConnsPerHost: idlePerHost,
		IdleConnTimeout:     90 * time.Second,
	}
}

// Encode encodes a request body as every client here sends it: without HTML escaping, so push data
// is copied as it came (only compacted) and a body is never larger than its parts.
func Encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// caller makes JSON calls with one credential header.
type caller struct {
	hc          *http.Client
	authHeader  string // wire.SecretHeader or Authorization
	authValue   string
	description string // for errors: "push-route", "push-server"
}

// call sends in (nil: no body) to url and decodes a 2xx answer into out (nil: discarded), reading
// at most maxAnswer bytes of it. A non-2xx answer is an *Error, wrapped with the path.
func (c *caller) call(ctx context.Context, method, url, traceID string, in, out any, maxAnswer int64) error {
	var body []byte
	contentType := ""
	if in != nil {
		b, err := Encode(in)
		if err != nil {
			return fmt.Errorf("%s %s: encode: %w", c.description, url, err)
		}
		body, contentType = b, "application/json"
	}
	return c.send(ctx, method, url, traceID, contentType, body, func(resp *http.Response) error {
		if out == nil {
			return nil
		}
		return json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(out)
	})
}

// callBinary posts body, of the binary media type contentType, to url and returns the 2xx answer's
// body, which must be of the same type, reading at most maxAnswer bytes of it. Errors are as for call.
func (c *caller) callBinary(ctx context.Context, url, traceID, contentType string, body []byte, maxAnswer int64) ([]byte, error) {
	var answer bytes.Buffer
	err := c.send(ctx, http.MethodPost, url, traceID, contentType, body, func(resp *http.Response) error {
		if got := resp.Header.Get("Content-Type"); got != contentType {
			return fmt.Errorf("answered in %q, not %q", got, contentType)
		}
		if resp.ContentLength > 0 && resp.ContentLength <= maxAnswer {
			answer.Grow(int(resp.ContentLength) + bytes.MinRead)
		}
		_, err := answer.ReadFrom(io.LimitReader(resp.Body, maxAnswer))
		return err
	})
	return answer.Bytes(), err
}

// send makes one call and hands a 2xx answer to read.
func (c *caller) send(ctx context.Context, method, url, traceID, contentType string, body []byte, read func(*http.Response) error) error {
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, r)
	if err != nil {
		return fmt.Errorf("%s %s: %w", c.description, url, err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	req.Header.Set(c.authHeader, c.authValue)
	if traceID != "" {
		req.Header.Set(wire.TraceHeader, traceID)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s unreachable: %w", c.description, unwrapURL(err))
	}
	defer func() {
		// What is left is read so the connection goes back to the pool.
		io.Copy(io.Discard, io.LimitReader(resp.Body, maxErrorBody))
		resp.Body.Close()
	}()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %w", c.description, req.URL.Path, ReadError(resp))
	}
	if err := read(resp); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", c.description, req.URL.Path, err)
	}
	return nil
}

// unwrapURL drops net/http's *url.Error wrapper, which repeats the method and URL.
func unwrapURL(err error) error {
	if inner := errors.Unwrap(err); inner != nil {
		return inner
	}
	return err
}

func joinURL(base, path string) string { return strings.TrimRight(base, "/") + path }
