package main

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
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
		tp := r.Header.Get("Traceparent")
		id := traceIDFrom(tp, r.Header.Get(wire.TraceHeader))
		w.Header().Set(wire.TraceHeader, id)
		if tp != "" {
			w.Header().Set("Traceparent", tp)
		}
		h.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), traceKey{}, id)))
	})
}

// traceIDFrom picks the trace id of a request from its traceparent and X-Request-Id headers, or makes
// one.
func traceIDFrom(traceparent, requestID string) string {
	// traceparent: version-traceid-parentid-flags, trace id 32 hex digits.
	_, rest, ok := strings.Cut(traceparent, "-")
	id, rest, ok2 := strings.Cut(rest, "-")
	_, flags, ok3 := strings.Cut(rest, "-")
	if ok && ok2 && ok3 && !strings.Contains(flags, "-") && len(id) == 32 && isHex(id) {
		return id
	}
	if requestID != "" && len(requestID) <= 128 && printable(requestID) {
		return requestID
	}
	// A trace id only has to be unique, not secret: the runtime's generator costs no system call,
	// where crypto/rand makes one per push.
	var b [16]byte
	binary.LittleEndian.PutUint64(b[:8], rand.Uint64())
	binary.LittleEndian.PutUint64(b[8:], rand.Uint64())
	return hex.EncodeToString(b[:])
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
