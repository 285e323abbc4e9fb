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

func TestDecodeStrict(t *testing.T) {
	type push struct {
		UIDs []string `json:"uids"`
		TTLS int64    `json:"ttl_s"`
		Data any      `json:"data"`
	}
	for body, want := range map[string]string{
		`{"uids":["a"],"ttl":60}`:    `unknown field "ttl"; did you mean "ttl_s"?`,
		`{"uids":["a"],"uid":"x"}`:   `unknown field "uid"; did you mean "uids"?`,
		`{"uids":["a"],"dta":1}`:     `unknown field "dta"; did you mean "data"?`,
		`{"uids":["a"],"colour":1}`:  `unknown field "colour"`,
		`{"uids":["a"],"ttl_s":60}`:  ``,
		`{"uids":["a"],"TTL_S":60}`:  ``, // encoding/json matches names without regard to case
		`{"uids":["a"],"ttl_s":"x"}`: `field "ttl_s" must be int64`,
	} {
		var dst push
		r := httptest.NewRequest(http.MethodPost, "/", strings.NewReader(body))
		err := DecodeStrict(httptest.NewRecorder(), r, 0, &dst)
		var apiErr *Error
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", body, err)
		case want != "" && (!errors.As(err, &apiErr) || apiErr.Message != want):
			t.Errorf("%s: %v, want %q", body, err, want)
		case want != "" && strings.HasPrefix(want, "unknown") && apiErr.Code != CodeInvalidRequest:
			t.Errorf("%s: code %s, want invalid_request", body, apiErr.Code)
		}
	}
	// The lenient decoder of the internal APIs still ignores fields it does not know.
	var dst struct{ A int }
	if err := DecodeJSON(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, "/", strings.NewReader(`{"A":1,"B":2}`)), 0, &dst); err != nil || dst.A != 1 {
		t.Fatalf("lenient: %v %+v", err, dst)
	}
}

func TestUnrouted(t *testing.T) {
	mux := http.NewServeMux()
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	mux.Handle("POST /v1/push", ok)
	mux.Handle("GET /v1/users/{uid}", ok)
	mux.Handle("DELETE /v1/users/{uid}", ok)
	mux.Handle("/", Unrouted(mux, "/"))
	for _, c := range []struct {
		method, path string
		status       int
		allow        string
	}{
		{"GET", "/v1/push", 405, "POST"},
		{"PUT", "/v1/users/x", 405, "GET, DELETE, HEAD"},
		{"GET", "/v1/nothing", 404, ""},
		{"POST", "/v1/push", 200, ""},
	} {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(c.method, c.path, nil))
		if w.Code != c.status || w.Header().Get("Allow") != c.allow {
			t.Errorf("%s %s: %d Allow %q, want %d %q", c.method, c.path, w.Code, w.Header().Get("Allow"), c.status, c.allow)
		}
		if c.status != 200 && w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: Content-Type %q", c.method, c.path, w.Header().Get("Content-Type"))
		}
	}
}

func TestWriteJSONKeepsAngleBrackets(t *testing.T) {
	w := httptest.NewRecorder()
	WriteJSON(w, http.StatusOK, map[string]string{"hint": "Authorization: Bearer <key>"})
	if !strings.Contains(w.Body.String(), "Bearer <key>") {
		t.Fatalf("body %s: the hint came out escaped", w.Body.String())
	}
}
