package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldpush/herald/pkg/client"
)

func TestSplitEven(t *testing.T) {
	tests := []struct {
		n, parts int
		want     []share
	}{
		{18000, 2, []share{{0, 9000}, {9000, 9000}}},
		{10, 3, []share{{0, 4}, {4, 3}, {7, 3}}},
		{2, 3, []share{{0, 1}, {1, 1}, {2, 0}}},
		{5, 0, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%d/%d", tt.n, tt.parts), func(t *testing.T) {
			got := splitEven(tt.n, tt.parts)
			if !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("splitEven(%d, %d) = %v, want %v", tt.n, tt.parts, got, tt.want)
			}
		})
	}
}

func TestSplitEvenCoversEveryConnectionOnce(t *testing.T) {
	for n := 0; n < 50; n++ {
		for parts := 1; parts < 7; parts++ {
			next := 0
			for _, s := range splitEven(n, parts) {
				if s.First != next {
					t.Fatalf("splitEven(%d, %d): share starts at %d, want %d", n, parts, s.First, next)
				}
				next += s.Count
			}
			if next != n {
				t.Fatalf("splitEven(%d, %d) covers %d connections", n, parts, next)
			}
		}
	}
}

func TestAutoProcs(t *testing.T) {
	tests := []struct{ conns, max, want int }{
		{18000, 9000, 2},
		{18001, 9000, 3},
		{10, 9000, 1},
		{10, 0, 1},
	}
	for _, tt := range tests {
		if got := autoProcs(tt.conns, tt.max); got != tt.want {
			t.Errorf("autoProcs(%d, %d) = %d, want %d", tt.conns, tt.max, got, tt.want)
		}
	}
}

func TestSourceAddrs(t *testing.T) {
	tests := []struct {
		base    string
		k       int
		want    string
		wantErr string
	}{
		{"127.0.0.2", 3, "127.0.0.2 127.0.0.3 127.0.0.4", ""},
		{"127.0.0.255", 2, "127.0.0.255 127.0.1.0", ""},
		{"127.255.255.255", 2, "", "loopback"},
		{"255.255.255.255", 2, "", "address space"},
		{"::1", 1, "", "IPv4"},
		{"nonsense", 1, "", "source address"},
		{"127.0.0.2", 0, "", "at least one"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s×%d", tt.base, tt.k), func(t *testing.T) {
			got, err := sourceAddrs(tt.base, tt.k)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var s []string
			for _, a := range got {
				s = append(s, a.String())
			}
			if strings.Join(s, " ") != tt.want {
				t.Fatalf("got %v, want %s", s, tt.want)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	lim := limits{filesPerProc: 20000, portsPerSource: 28232}
	tests := []struct {
		name                  string
		conns, procs, sources int
		lim                   limits
		wantErr               string
	}{
		{"benchmark shape", 18000, 2, 4, lim, ""},
		{"one process too many files", 20000, 1, 4, lim, "more -procs"},
		{"one source too few ports", 36000, 4, 1, lim, "more -sources"},
		{"unknown limits", 1_000_000, 1, 1, limits{}, ""},
		{"no connections", 0, 1, 1, lim, "-conns"},
		{"no processes", 1, 0, 1, lim, "-procs"},
		{"no sources", 1, 1, 0, lim, "-sources"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := check(tt.conns, tt.procs, tt.sources, tt.lim)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
			}
		})
	}
}

func TestIdentity(t *testing.T) {
	tests := []struct {
		i, uids          int
		wantUID, wantDev string
	}{
		{0, 0, "lg-0", "d0"},
		{17999, 0, "lg-17999", "d0"},
		{7, 3, "lg-1", "d2"},
		{2, 3, "lg-2", "d0"},
	}
	for _, tt := range tests {
		uid, dev := identity("lg", tt.i, tt.uids)
		if uid != tt.wantUID || dev != tt.wantDev {
			t.Errorf("identity(lg, %d, %d) = %s, %s; want %s, %s", tt.i, tt.uids, uid, dev, tt.wantUID, tt.wantDev)
		}
	}
	// Every (uid, device) pair is distinct, so no connection replaces another.
	seen := map[string]bool{}
	for i := range 100 {
		uid, dev := identity("lg", i, 7)
		if seen[uid+"/"+dev] {
			t.Fatalf("connection %d repeats %s/%s", i, uid, dev)
		}
		seen[uid+"/"+dev] = true
	}
}

func TestParseOffsets(t *testing.T) {
	got, err := parseOffsets(" 15s, 10s ,130s")
	if err != nil {
		t.Fatal(err)
	}
	want := []time.Duration{10 * time.Second, 15 * time.Second, 130 * time.Second}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for _, bad := range []string{"", "soon", "-1s"} {
		if _, err := parseOffsets(bad); err == nil {
			t.Errorf("parseOffsets(%q) succeeded", bad)
		}
	}
}

func TestPercentile(t *testing.T) {
	s := []int64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}
	tests := []struct {
		q    float64
		want int64
	}{{0, 1}, {0.5, 5}, {0.9, 9}, {0.99, 10}, {1, 10}}
	for _, tt := range tests {
		if got := percentile(s, tt.q); got != tt.want {
			t.Errorf("percentile(%v) = %d, want %d", tt.q, got, tt.want)
		}
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile of nothing = %d", got)
	}
}

func TestPerConn(t *testing.T) {
	if got := perConn(100, 1100, 10); got != 100 {
		t.Errorf("growth = %v, want 100", got)
	}
	if got := perConn(1100, 100, 10); got != -100 {
		t.Errorf("shrink = %v, want -100", got)
	}
	if got := perConn(0, 100, 0); got != 0 {
		t.Errorf("no connections = %v, want 0", got)
	}
}

func TestCounts(t *testing.T) {
	m := addCounts(nil, map[string]int{"b": 1, "a": 2})
	m = addCounts(m, map[string]int{"b": 3})
	m = addCounts(m, nil)
	if got := formatCounts(m); got != "a 2, b 4" {
		t.Fatalf("formatCounts = %q", got)
	}
	if got := formatCounts(nil); got != "none" {
		t.Fatalf("formatCounts(nil) = %q", got)
	}
}

func TestFailureKind(t *testing.T) {
	tests := []struct {
		err  error
		want string
	}{
		{ws.StatusError(503), "handshake_http_503"},
		{fmt.Errorf("dial: %w", syscall.ECONNREFUSED), "handshake_refused"},
		{&os.SyscallError{Syscall: "connect", Err: syscall.EADDRNOTAVAIL}, "handshake_addr_not_available"},
		{syscall.EMFILE, "handshake_too_many_files"},
		{os.ErrDeadlineExceeded, "handshake_timeout"},
		{context.DeadlineExceeded, "handshake_timeout"},
		{io.ErrUnexpectedEOF, "handshake_eof"},
		{syscall.Errno(200), "handshake_errno_200"},
		{errors.New("something else"), "handshake_error"},
	}
	for _, tt := range tests {
		if got := failureKind("handshake", tt.err); got != tt.want {
			t.Errorf("failureKind(%v) = %q, want %q", tt.err, got, tt.want)
		}
	}
	if got := mintFailure(fmt.Errorf("mint token: %w", &client.APIError{Status: 401, Code: "unauthorized"})); got != "mint_http_401_unauthorized" {
		t.Errorf("mintFailure = %q", got)
	}
}

func TestChooseNodes(t *testing.T) {
	all := []node{{ID: "ps-1"}, {ID: "ps-2"}}
	tests := []struct {
		want             string
		targets, watched int
		wantErr          bool
	}{
		{"", 2, 2, false},
		{"auth", 0, 2, false},
		{"ps-2", 1, 1, false},
		{"ps-9", 0, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			targets, watched, err := chooseNodes(all, tt.want)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v", err)
			}
			if len(targets) != tt.targets || len(watched) != tt.watched {
				t.Fatalf("got %d targets, %d watched; want %d, %d", len(targets), len(watched), tt.targets, tt.watched)
			}
			if tt.want == "ps-2" && targets[0].ID != "ps-2" {
				t.Fatalf("target %s", targets[0].ID)
			}
		})
	}
}

func TestParseGauges(t *testing.T) {
	text := `# HELP go_memstats_heap_inuse_bytes Number of heap bytes that are in use.
# TYPE go_memstats_heap_inuse_bytes gauge
go_memstats_heap_inuse_bytes 1.2345e+07
go_gc_duration_seconds{quantile="0.5"} 0.0001
go_gc_duration_seconds_count 12
herald_ws_connections 18000
`
	got := parseGauges(strings.NewReader(text), []string{"go_memstats_heap_inuse_bytes", "go_gc_duration_seconds_count", "go_gc_duration_seconds"})
	want := map[string]float64{"go_memstats_heap_inuse_bytes": 12345000, "go_gc_duration_seconds_count": 12}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %v, want %v", got, want)
	}
}

// serverFrame is an unmasked frame as a push-server sends it.
func serverFrame(t testing.TB, op ws.OpCode, payload []byte) []byte {
	t.Helper()
	b, err := ws.CompileFrame(ws.NewFrame(op, true, payload))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestReadWelcome(t *testing.T) {
	welcome := `{"type":"welcome","conn_id":"ps-1:abc","node":"ps-1","uid":"lg-1","heartbeat_s":30}`
	tests := []struct {
		name    string
		stream  []byte
		wantHB  int
		wantErr string
	}{
		{"welcome", serverFrame(t, ws.OpText, []byte(welcome)), 30, ""},
		{"closed", serverFrame(t, ws.OpClose, ws.NewCloseFrameBody(1013, "route")), 0, "welcome_closed_1013"},
		{"other frame", serverFrame(t, ws.OpText, []byte(`{"type":"pong"}`)), 0, "welcome_bad_frame"},
		{"too large", serverFrame(t, ws.OpText, bytes.Repeat([]byte("x"), 5000)), 0, "welcome_bad_frame"},
		{"cut short", serverFrame(t, ws.OpText, []byte(welcome))[:20], 0, "welcome_eof"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hb, err := readWelcome(bytes.NewReader(tt.stream))
			if tt.wantErr != "" {
				if err == nil || err.Error() != tt.wantErr {
					t.Fatalf("err = %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil || hb != tt.wantHB {
				t.Fatalf("readWelcome = %d, %v; want %d", hb, err, tt.wantHB)
			}
		})
	}
}

func TestReadFrameSkipsWhatDoesNotFit(t *testing.T) {
	var stream []byte
	stream = append(stream, serverFrame(t, ws.OpText, bytes.Repeat([]byte("p"), 1000))...)
	stream = append(stream, serverFrame(t, ws.OpText, []byte(`{"type":"pong"}`))...)
	r := bytes.NewReader(stream)
	buf := make([]byte, ws.MaxHeaderSize-2+125)
	h, p, err := readFrame(r, buf)
	if err != nil || h.Length != 1000 || p != nil {
		t.Fatalf("large frame: %v, %d bytes kept, %v", h, len(p), err)
	}
	_, p, err = readFrame(r, buf)
	if err != nil || string(p) != `{"type":"pong"}` {
		t.Fatalf("next frame: %q, %v", p, err)
	}
}
