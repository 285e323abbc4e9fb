package httpapi

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestBearerToken(t *testing.T) {
	for _, tt := range []struct {
		header, want string
		ok           bool
	}{
		{"Bearer abc", "abc", true},
		{"bearer  abc ", "abc", true},
		{"Basic abc", "", false},
		{"Bearer", "", false},
		{"Bearer   ", "", false},
		{"", "", false},
	} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("Authorization", tt.header)
		if got, ok := BearerToken(r); got != tt.want || ok != tt.ok {
			t.Errorf("BearerToken(%q) = %q %v, want %q %v", tt.header, got, ok, tt.want, tt.ok)
		}
	}
}

func TestClientIP(t *testing.T) {
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r.RemoteAddr = "10.0.0.9:5555"
	r.Header.Set("X-Forwarded-For", "203.0.113.7, 10.0.0.1")
	if got := ClientIP(r, ""); got != "10.0.0.9" {
		t.Errorf("without a header: %q", got)
	}
	if got := ClientIP(r, "X-Forwarded-For"); got != "203.0.113.7" {
		t.Errorf("with the proxy header: %q", got)
	}
}

func TestRequireSecret(t *testing.T) {
	h := RequireSecret("X-Secret", "s3", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(204) }))
	for _, tt := range []struct {
		value string
		want  int
	}{{"s3", 204}, {"s4", 401}, {"", 401}} {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.Header.Set("X-Secret", tt.value)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		if rec.Code != tt.want {
			t.Errorf("secret %q: %d, want %d", tt.value, rec.Code, tt.want)
		}
	}
}
