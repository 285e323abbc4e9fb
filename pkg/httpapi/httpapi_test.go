package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestDecodeJSON(t *testing.T) {
	type req struct {
		UID string `json:"uid"`
		N   int    `json:"n"`
	}
	tests := []struct {
		name     string
		body     string
		wantCode string
		want     req
	}{
		{name: "ok", body: `{"uid":"a","n":2}`, want: req{UID: "a", N: 2}},
		{name: "unknown fields ignored", body: `{"uid":"a","extra":[1,2]}`, want: req{UID: "a"}},
		{name: "empty", body: ``, wantCode: CodeMalformedJSON},
		{name: "malformed", body: `{"uid":`, wantCode: CodeMalformedJSON},
		{name: "wrong type", body: `{"n":"x"}`, wantCode: CodeMalformedJSON},
		{name: "two values", body: `{"uid":"a"}{"uid":"b"}`, wantCode: CodeMalformedJSON},
		{name: "too large", body: `{"uid":"` + strings.Repeat("x", 100) + `"}`, wantCode: CodeBodyTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(tt.body))
			var got req
			err := DecodeJSON(httptest.NewRecorder(), r, 64, &got)
			var apiErr *Error
			switch {
			case tt.wantCode == "" && err != nil:
				t.Fatalf("unexpected error %v", err)
			case tt.wantCode != "" && (!errors.As(err, &apiErr) || apiErr.Code != tt.wantCode):
				t.Fatalf("error = %v, want code %s", err, tt.wantCode)
			case tt.wantCode == "" && got != tt.want:
				t.Fatalf("decoded %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestWriteError(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantStatus int
		wantCode   string
		wantRetry  string
	}{
		{name: "api error", err: Errorf(CodeBadCredentials, "no"), wantStatus: 401, wantCode: CodeBadCredentials},
		{name: "wrapped", err: fmt.Errorf("login: %w", Errorf(CodeNoPushServer, "none")), wantStatus: 503, wantCode: CodeNoPushServer},
		{name: "retry after rounds up", err: &Error{Code: CodeRateLimited, Message: "slow down", RetryAfter: 1500 * time.Millisecond}, wantStatus: 429, wantCode: CodeRateLimited, wantRetry: "2"},
		{name: "plain error hidden", err: errors.New("dial tcp 10.0.0.1: secret"), wantStatus: 500, wantCode: CodeInternal},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			WriteError(rec, tt.err)
			if rec.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d", rec.Code, tt.wantStatus)
			}
			var body struct {
				Error struct{ Code, Message string }
			}
			if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			if body.Error.Code != tt.wantCode || body.Error.Message == "" {
				t.Fatalf("body %q, want code %s and a message", rec.Body, tt.wantCode)
			}
			if strings.Contains(rec.Body.String(), "secret") {
				t.Fatalf("internal detail leaked: %s", rec.Body)
			}
			if got := rec.Header().Get("Retry-After"); got != tt.wantRetry {
				t.Fatalf("Retry-After %q, want %q", got, tt.wantRetry)
			}
		})
	}
}
