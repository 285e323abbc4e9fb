package health

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestReadyz(t *testing.T) {
	ok := Check{Name: "mysql", Probe: func(context.Context) error { return nil }}
	down := Check{Name: "zookeeper", Probe: func(context.Context) error { return errors.New("not connected") }}
	slow := Check{Name: "redis", Probe: func(ctx context.Context) error { <-ctx.Done(); return ctx.Err() }}

	tests := []struct {
		name       string
		checks     []Check
		wantStatus int
		wantInBody []string
	}{
		{name: "all ok", checks: []Check{ok}, wantStatus: 200, wantInBody: []string{`"mysql":"ok"`}},
		{name: "one down", checks: []Check{ok, down}, wantStatus: 503, wantInBody: []string{"zookeeper: not connected", `"code":"not_ready"`}},
		{name: "timeout", checks: []Check{slow}, wantStatus: 503, wantInBody: []string{"redis: context deadline exceeded"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Readyz(50*time.Millisecond, tt.checks...).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/readyz", nil))
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			if !json.Valid(rec.Body.Bytes()) {
				t.Fatalf("body is not JSON: %s", rec.Body)
			}
			for _, s := range tt.wantInBody {
				if !strings.Contains(rec.Body.String(), s) {
					t.Fatalf("body %s lacks %s", rec.Body, s)
				}
			}
		})
	}
}
