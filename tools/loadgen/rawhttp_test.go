package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestRawCaller(t *testing.T) {
	big := strings.Repeat("x", 64<<10) // large enough that net/http answers chunked
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Authorization") != "Bearer key" || r.URL.Path != "/v1/push" {
			w.WriteHeader(401)
			io.WriteString(w, `{"error":{"code":"unauthorized","message":"no"}}`)
			return
		}
		switch string(body) {
		case "big":
			io.WriteString(w, big)
		case "close":
			w.Header().Set("Connection", "close")
			io.WriteString(w, "bye")
		case "fail":
			w.WriteHeader(503)
			io.WriteString(w, `{"error":{"code":"unavailable","message":"later"}}`)
		default:
			w.Write(body)
		}
	}))
	defer srv.Close()

	c, err := newRawCaller(srv.URL+"/v1/push", "key", 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.close()
	var buf bytes.Buffer
	for _, tc := range []struct{ body, want, fail string }{
		{"hello", "hello", ""},
		{"big", big, ""},
		{"again", "again", ""},
		{"close", "bye", ""},
		{"after close", "after close", ""},
		{"fail", "", "http_503_unavailable"},
		{"still fine", "still fine", ""},
	} {
		got, fail := c.post([]byte(tc.body), &buf)
		if fail != tc.fail || (tc.want != "" && string(got) != tc.want) {
			t.Fatalf("post %q = %.40q, %q; want %.40q, %q", tc.body, got, fail, tc.want, tc.fail)
		}
	}

	bad, _ := newRawCaller(srv.URL+"/elsewhere", "key", 5*time.Second)
	defer bad.close()
	if _, fail := bad.post([]byte("x"), &buf); fail != "http_401_unauthorized" {
		t.Fatalf("wrong path: %q", fail)
	}
	if _, err := newRawCaller("https://example.invalid/v1/push", "key", time.Second); err == nil {
		t.Fatal("https accepted")
	}
}
