package client

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

func TestLoginAndMint(t *testing.T) {
	exp := time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
	var gotPath, gotAuth string
	var gotBody map[string]string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotPath, gotAuth = r.URL.Path, r.Header.Get("Authorization")
		gotBody = nil
		_ = json.NewDecoder(r.Body).Decode(&gotBody)
		_, _ = io.WriteString(w, `{"token":"tok-1","expires_at":"2030-01-02T03:04:05Z","server":{"id":"ps-1","ws_url":"ws://h:1/ws"}}`)
	}))
	defer srv.Close()
	want := Session{Token: "tok-1", ExpiresAt: exp, ServerID: "ps-1", WSURL: "ws://h:1/ws"}

	s, err := Login(context.Background(), srv.URL+"/", "u1", "pw", "d1")
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	if s != want {
		t.Fatalf("Login = %+v, want %+v", s, want)
	}
	if gotPath != "/v1/login" || gotAuth != "" || gotBody["uid"] != "u1" || gotBody["password"] != "pw" || gotBody["device"] != "d1" {
		t.Fatalf("login request: path %q, auth %q, body %v", gotPath, gotAuth, gotBody)
	}

	s, err = MintToken(context.Background(), srv.URL, "key-1", "u2", "d2")
	if err != nil {
		t.Fatalf("MintToken: %v", err)
	}
	if s != want {
		t.Fatalf("MintToken = %+v, want %+v", s, want)
	}
	if gotPath != "/v1/tokens" || gotAuth != "Bearer key-1" || gotBody["uid"] != "u2" || gotBody["device"] != "d2" {
		t.Fatalf("tokens request: path %q, auth %q, body %v", gotPath, gotAuth, gotBody)
	}
}

func TestLoginErrors(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		retryAfter string
		body       string
		want       APIError
	}{
		{
			name:   "bad credentials",
			status: http.StatusUnauthorized,
			body:   `{"error":{"code":"bad_credentials","message":"unknown uid or wrong password"}}`,
			want:   APIError{Status: 401, Code: "bad_credentials", Message: "unknown uid or wrong password"},
		},
		{
			name:       "rate limited",
			status:     http.StatusTooManyRequests,
			retryAfter: "3",
			body:       `{"error":{"code":"rate_limited","message":"slow down"}}`,
			want:       APIError{Status: 429, Code: "rate_limited", Message: "slow down", RetryAfter: 3 * time.Second},
		},
		{
			name:   "not a herald error",
			status: http.StatusBadGateway,
			body:   "<html>bad gateway</html>",
			want:   APIError{Status: 502, Message: "<html>bad gateway</html>"},
		},
		{
			name:   "empty body",
			status: http.StatusServiceUnavailable,
			want:   APIError{Status: 503, Message: "Service Unavailable"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}))
			defer srv.Close()
			_, err := Login(context.Background(), srv.URL, "u1", "pw", "d1")
			var apiErr *APIError
			if !errors.As(err, &apiErr) {
				t.Fatalf("Login error = %v, want an *APIError", err)
			}
			if *apiErr != tt.want {
				t.Fatalf("APIError = %+v, want %+v", *apiErr, tt.want)
			}
		})
	}
}
