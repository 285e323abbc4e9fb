package main

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestCounters(t *testing.T) {
	text := `# HELP herald_ws_pushed_total Push frames written.
# TYPE herald_ws_pushed_total counter
herald_ws_pushed_total 42
herald_ws_pushed_total_extra 1000
herald_ws_frames_in_total{kind="a"} 3
herald_ws_frames_in_total{kind="b",note="x } y"} 4.5
herald_ws_connections 7
`
	got := counters(strings.NewReader(text), "herald_ws_pushed_total", "herald_ws_frames_in_total", "missing_total")
	if got["herald_ws_pushed_total"] != 42 || got["herald_ws_frames_in_total"] != 7.5 || got["missing_total"] != 0 {
		t.Fatalf("%v", got)
	}
}

func TestParseCursor(t *testing.T) {
	tests := []struct {
		in     string
		want   cursor
		paged  bool
		failed bool
	}{
		{in: ""},
		{in: "1700000000000", want: cursor{TS: 1700000000000}, paged: true},
		{in: "1700000000000:01J:X", want: cursor{TS: 1700000000000, ID: "01J:X"}, paged: true},
		{in: "yesterday", failed: true},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, paged, err := parseCursor(tt.in)
			if (err != nil) != tt.failed || got != tt.want || paged != tt.paged {
				t.Fatalf("got %+v %v %v", got, paged, err)
			}
			if paged && tt.want.ID != "" && got.String() != tt.in {
				t.Fatalf("String() = %q", got.String())
			}
		})
	}
}

func TestPushFormParse(t *testing.T) {
	tests := []struct {
		name    string
		form    pushForm
		uids    int
		ttl     int64
		wantErr string
	}{
		{name: "uids", form: pushForm{Target: "uids", UIDs: "a, b\nc  a", Data: ` {"x":1} `, TTL: "60"}, uids: 4, ttl: 60},
		{name: "broadcast", form: pushForm{Target: "all", Data: `"hi"`}},
		{name: "invalid JSON", form: pushForm{Target: "uids", UIDs: "a", Data: `{x:1}`}, wantErr: "not valid JSON"},
		{name: "no data", form: pushForm{Target: "uids", UIDs: "a", Data: "  "}, wantErr: "data is required"},
		{name: "null", form: pushForm{Target: "uids", UIDs: "a", Data: "null"}, wantErr: "must not be null"},
		{name: "no uids", form: pushForm{Target: "uids", Data: "1"}, wantErr: "at least one uid"},
		{name: "bad uid", form: pushForm{Target: "uids", UIDs: "a|b", Data: "1"}, wantErr: "uid may hold only"},
		{name: "bad ttl", form: pushForm{Target: "uids", UIDs: "a", Data: "1", TTL: "-5"}, wantErr: "ttl must be"},
		{name: "broadcast with ttl", form: pushForm{Target: "all", Data: "1", TTL: "5"}, wantErr: "takes no ttl"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := tt.form.parse()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want %q", err, tt.wantErr)
				}
				if statusOf(err) != http.StatusBadRequest {
					t.Fatalf("status %d", statusOf(err))
				}
				return
			}
			if err != nil || len(req.UIDs) != tt.uids || req.TTLS != tt.ttl {
				t.Fatalf("%+v, %v", req, err)
			}
		})
	}
}

func TestSessionCookie(t *testing.T) {
	s, err := newSessions("0123456789abcdef0123456789abcdef", time.Hour, false)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	sess, err := s.start(rec, httptest.NewRequest(http.MethodGet, "/", nil), "ops")
	if err != nil {
		t.Fatal(err)
	}
	cookie := rec.Result().Cookies()[0]
	withCookie := func(value string) *http.Request {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.AddCookie(&http.Cookie{Name: cookieName, Value: value})
		return r
	}
	if got, ok := s.load(withCookie(cookie.Value)); !ok || got != sess {
		t.Fatalf("load = %+v %v", got, ok)
	}
	payload, mac, _ := strings.Cut(cookie.Value, ".")
	other, _ := newSessions("another key, also 32 characters long", time.Hour, false)
	for name, value := range map[string]string{
		"tampered payload": strings.ToUpper(payload[:4]) + payload[4:] + "." + mac,
		"no mac":           payload,
		"other key":        payload + "." + other.sign(payload),
	} {
		if _, ok := s.load(withCookie(value)); ok {
			t.Errorf("%s accepted", name)
		}
	}
	if s.checkCSRF(s.csrfToken(sess), sess) != nil || s.checkCSRF(other.csrfToken(sess), sess) == nil || s.checkCSRF("", sess) == nil {
		t.Fatal("CSRF check")
	}

	expired, _ := newSessions("0123456789abcdef0123456789abcdef", -time.Second, false)
	rec = httptest.NewRecorder()
	expired.start(rec, httptest.NewRequest(http.MethodGet, "/", nil), "ops")
	if _, ok := s.load(withCookie(rec.Result().Cookies()[0].Value)); ok {
		t.Fatal("expired session accepted")
	}

	s.end(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil), sess)
	if _, ok := s.load(withCookie(cookie.Value)); ok {
		t.Fatal("ended session accepted")
	}
}

func TestLocalPath(t *testing.T) {
	for in, want := range map[string]string{
		"":                "/",
		"/keys?x=1":       "/keys?x=1",
		"//evil.example":  "/",
		"/\\evil.example": "/",
		"https://evil":    "/",
		"keys":            "/",
	} {
		if got := localPath(in); got != want {
			t.Errorf("localPath(%q) = %q, want %q", in, got, want)
		}
	}
}
