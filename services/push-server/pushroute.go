package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/heraldpush/herald/pkg/wire"
)

const (
	// pushRouteCallTimeout bounds one call to push-route: an ack batch, or the wait for the first
	// byte of a pending list.
	pushRouteCallTimeout = 3 * time.Second
	// maxPendingBody bounds a pending list: push-route sends at most 1,000 messages of at most 64 KiB
	// data each, plus their envelopes.
	maxPendingBody = 80 << 20
)

// pushRouteClient calls push-route's internal API (wire.PathAcks, wire.PathPending) with the shared
// internal secret. Its connections are pooled and kept alive: acks and replays are frequent and
// small, so a new TCP connection per call would cost more than the call.
type pushRouteClient struct {
	base   string // no trailing slash
	secret string
	http   *http.Client
}

func newPushRouteClient(base, secret string) *pushRouteClient {
	transport := &http.Transport{
		// Internal calls go straight to push-route, never through an HTTP_PROXY meant for the outside.
		Proxy:       nil,
		DialContext: (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		// Enough idle connections for every concurrent replay and ack sender, so none is redialled.
		MaxIdleConns:          2 * (replayWorkers + ackSenders),
		MaxIdleConnsPerHost:   2 * (replayWorkers + ackSenders),
		IdleConnTimeout:       90 * time.Second,
		ResponseHeaderTimeout: pushRouteCallTimeout,
	}
	return &pushRouteClient{
		base:   strings.TrimRight(base, "/"),
		secret: secret,
		// The overall timeout is a backstop; each call sets its own, shorter deadline.
		http: &http.Client{Transport: transport, Timeout: 30 * time.Second},
	}
}

// postAcks hands acks to push-route, which clears the acked pending messages.
func (p *pushRouteClient) postAcks(ctx context.Context, acks []wire.Ack) error {
	return p.post(ctx, wire.PathAcks, wire.AckBatch{Acks: acks}, nil)
}

// pending returns uid's pending messages, oldest first.
func (p *pushRouteClient) pending(ctx context.Context, uid string) ([]wire.Message, error) {
	var resp wire.PendingResponse
	if err := p.post(ctx, wire.PathPending, wire.PendingRequest{UID: uid}, &resp); err != nil {
		return nil, err
	}
	return resp.Messages, nil
}

func (p *pushRouteClient) post(ctx context.Context, path string, in, out any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("push-route %s: %w", path, err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, p.base+path, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("push-route %s: %w", path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(wire.SecretHeader, p.secret)
	resp, err := p.http.Do(req)
	if err != nil {
		return fmt.Errorf("push-route %s: %w", path, err)
	}
	defer func() {
		// Read what is left so the connection goes back to the pool.
		io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		resp.Body.Close()
	}()
	if resp.StatusCode/100 != 2 {
		return newStatusError(path, resp)
	}
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxPendingBody)).Decode(out); err != nil {
		return fmt.Errorf("push-route %s: decode response: %w", path, err)
	}
	return nil
}

// statusError is a non-2xx answer from push-route.
type statusError struct {
	path    string
	status  int
	code    string // the error code of push-route's JSON error body, when it sent one
	message string
}

func newStatusError(path string, resp *http.Response) *statusError {
	e := &statusError{path: path, status: resp.StatusCode}
	var body struct {
		Error struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body) == nil {
		e.code, e.message = body.Error.Code, body.Error.Message
	}
	return e
}

func (e *statusError) Error() string {
	if e.code == "" {
		return fmt.Sprintf("push-route %s: HTTP %d", e.path, e.status)
	}
	return fmt.Sprintf("push-route %s: HTTP %d %s: %s", e.path, e.status, e.code, e.message)
}

// permanent reports whether sending the same request again cannot succeed: push-route found the
// request itself malformed or too large. Everything else (unreachable, 5xx, 429, and also 401 or 404,
// which mean a wrong secret or URL an operator will fix) is worth retrying.
func (e *statusError) permanent() bool {
	switch e.status {
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusUnprocessableEntity:
		return true
	}
	return false
}

// logLimiter lets one message through per interval and counts those it held back, so a push-route
// outage during a reconnect storm does not write a warning per connection.
type logLimiter struct {
	every time.Duration

	// mu guards last and held.
	mu   sync.Mutex
	last time.Time
	held int
}

// allow reports whether to log now and how many messages were held back since the last one logged.
func (l *logLimiter) allow() (ok bool, held int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.last) < l.every {
		l.held++
		return false, 0
	}
	l.last, held, l.held = now, l.held, 0
	return true, held
}
