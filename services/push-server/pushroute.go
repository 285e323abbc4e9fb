package main

import (
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/heraldpush/herald/pkg/apiclient"
)

// pushRouteCallTimeout bounds one call to push-route: an ack batch, or the wait for the first byte
// of a pending list.
const pushRouteCallTimeout = 3 * time.Second

// newPushRouteClient returns the client of push-route's internal API (acks and pending messages).
// Its connections are pooled and kept alive: acks and replays are frequent and small, so a new TCP
// connection per call would cost more than the call.
func newPushRouteClient(base, secret string) (*apiclient.RouteClient, func()) {
	// Enough idle connections for every concurrent replay and ack sender, so none is redialled.
	transport := apiclient.NewTransport(2 * (replayWorkers + ackSenders))
	transport.ResponseHeaderTimeout = pushRouteCallTimeout
	// The overall timeout is a backstop; each call sets its own, shorter deadline.
	hc := &http.Client{Transport: transport, Timeout: 30 * time.Second}
	return apiclient.NewRouteClient(hc, base, secret), transport.CloseIdleConnections
}

// permanent reports whether sending the same request again cannot succeed: push-route found the
// request itself malformed or too large. Everything else (unreachable, 5xx, 429, and also 401 or 404,
// which mean a wrong secret or URL an operator will fix) is worth retrying.
func permanent(err error) bool {
	var apiErr *apiclient.Error
	if !errors.As(err, &apiErr) {
		return false
	}
	switch apiErr.Status {
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
