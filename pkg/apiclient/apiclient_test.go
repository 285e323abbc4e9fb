package apiclient

import (
	"net/http"
	"testing"
	"time"
)

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{in: "", want: 0},
		{in: "7", want: 7 * time.Second},
		{in: "-1", want: 0},
		{in: now.Add(90 * time.Second).Format(http.TimeFormat), want: 90 * time.Second},
		{in: now.Add(-time.Hour).Format(http.TimeFormat), want: 0},
		{in: "soon", want: 0},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			if got := parseRetryAfter(tt.in, now); got != tt.want {
				t.Fatalf("parseRetryAfter(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}
