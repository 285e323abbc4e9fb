package main

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"strings"

	"github.com/heraldpush/herald/pkg/wire"
)

type traceKey struct{}

// withTrace gives every request a trace id: the trace-id part of the caller's W3C traceparent, else
// its X-Request-Id, else a new one. It goes into the context (for logs and the calls to push-servers)
// and back in the response headers, so one message can be followed through the cluster.
func withTrace(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := traceIDFrom(r.Header)
		w.Header().Set(wire.TraceHeader, id)
		if tp := r.Header.Get("traceparent"); tp != "" {
			w.Header().Set("traceparent", tp)
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), traceKey{}, id)))
	})
}

func traceIDFrom(h http.Header) string {
	// traceparent: version-traceid-parentid-flags, trace id 32 hex digits.
	if parts := strings.Split(h.Get("traceparent"), "-"); len(parts) == 4 && len(parts[1]) == 32 && isHex(parts[1]) {
		return parts[1]
	}
	if id := h.Get(wire.TraceHeader); id != "" && len(id) <= 128 && printable(id) {
		return id
	}
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

func traceID(ctx context.Context) string {
	id, _ := ctx.Value(traceKey{}).(string)
	return id
}

func isHex(s string) bool {
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

func printable(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x21 || s[i] > 0x7e {
			return false
		}
	}
	return true
}
