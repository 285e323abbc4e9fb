package main

import (
	"strings"
	"testing"
)

func TestTraceIDFrom(t *testing.T) {
	const tid = "4bf92f3577b34da6a3ce929d0e0e4736"
	for _, c := range []struct{ traceparent, requestID, want string }{
		{"00-" + tid + "-00f067aa0ba902b7-01", "ignored", tid},
		{"00-" + tid + "-00f067aa0ba902b7-01-extra", "req-1", "req-1"}, // not four fields
		{"00-" + strings.ToUpper(tid) + "-00f067aa0ba902b7-01", "req-1", "req-1"},
		{"00-" + tid[:31] + "-00f067aa0ba902b7-01", "req-1", "req-1"},
		{"garbage", "req-1", "req-1"},
		{"", "req-1", "req-1"},
	} {
		if got := traceIDFrom(c.traceparent, c.requestID); got != c.want {
			t.Errorf("traceIDFrom(%q, %q) = %q, want %q", c.traceparent, c.requestID, got, c.want)
		}
	}
	seen := map[string]bool{}
	for _, requestID := range []string{"", "has space", strings.Repeat("x", 129), "", ""} {
		id := traceIDFrom("", requestID)
		if len(id) != 32 || !isHex(id) || seen[id] {
			t.Errorf("made trace id %q for request id %q: want 32 new hex digits", id, requestID)
		}
		seen[id] = true
	}
}
