package main

import (
	"bytes"
	"encoding/json"
	"math/rand/v2"
	"net"
	"reflect"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/gobwas/ws"

	"github.com/heraldpush/herald/pkg/netpoll"
)

func TestJSONField(t *testing.T) {
	p := []byte(`{"type":"push","id":"01JABC","data":{"t":1763707000123456789},"ts":1763707000123}`)
	tests := []struct{ key, want string }{
		{"type", "push"}, {"id", "01JABC"}, {"t", "1763707000123456789"}, {"ts", "1763707000123"}, {"nope", ""},
	}
	for _, tt := range tests {
		if got := string(jsonField(p, tt.key)); got != tt.want {
			t.Errorf("jsonField(%q) = %q, want %q", tt.key, got, tt.want)
		}
	}
	if jsonField([]byte(`{"a":"unterminated`), "a") != nil || jsonField([]byte(`{"a":}`), "a") != nil {
		t.Error("broken values should give nil")
	}
	if got := string(jsonField([]byte(`{"a": -12}`), "a")); got != "-12" {
		t.Errorf("got %q", got)
	}
}

func TestAtoi(t *testing.T) {
	for s, want := range map[string]int64{"0": 0, "42": 42, "-7": -7, "9223372036854775807": 1<<63 - 1} {
		if got, ok := atoi([]byte(s)); !ok || got != want {
			t.Errorf("atoi(%q) = %d, %v", s, got, ok)
		}
	}
	for _, s := range []string{"", "-", "1a", "12345678901234567890"} {
		if _, ok := atoi([]byte(s)); ok {
			t.Errorf("atoi(%q) accepted", s)
		}
	}
}

func TestParseFrame(t *testing.T) {
	ref := appendRef(nil, 17, 1763707000000000001)
	tests := []struct {
		in   string
		want parsedFrame
	}{
		{`{"type":"push","id":"X","data":{"t":123},"ts":1}`, parsedFrame{kind: kindPush, sent: 123, ok: true}},
		{`{"type":"push","id":"X","data":{"hello":1},"ts":1}`, parsedFrame{kind: kindPush}},
		{`{"type":"up_ack","ref":"` + string(ref) + `","id":"ABC"}`, parsedFrame{kind: kindUpAck, seq: 17, sent: 1763707000000000001, ok: true}},
		{`{"type":"up_ack","ref":"someone-else","id":"ABC"}`, parsedFrame{kind: kindUpAck}},
		{`{"type":"error","code":"rate_limited","message":"too many messages; slow down"}`, parsedFrame{kind: kindError, code: "rate_limited"}},
		{`{"type":"error","ref":"3.99","code":"unavailable","message":"m"}`, parsedFrame{kind: kindError, code: "unavailable", seq: 3, sent: 99, ok: true}},
		{`{"type":"pong"}`, parsedFrame{kind: kindPong}},
		{`{"type":"reconnect","reason":"drain"}`, parsedFrame{kind: "reconnect"}},
		{`not json`, parsedFrame{}},
	}
	for _, tt := range tests {
		if got := parseFrame([]byte(tt.in)); got != tt.want {
			t.Errorf("parseFrame(%s) = %+v, want %+v", tt.in, got, tt.want)
		}
	}
}

func TestBuiltMessagesAreValidJSON(t *testing.T) {
	var body struct {
		UIDs []string `json:"uids"`
		Data struct {
			T int64 `json:"t"`
		} `json:"data"`
	}
	b := appendPushBody(nil, []string{"lg-1", "lg-22"}, 99)
	if err := json.Unmarshal(b, &body); err != nil || !slices.Equal(body.UIDs, []string{"lg-1", "lg-22"}) || body.Data.T != 99 {
		t.Fatalf("push body %s: %+v, %v", b, body, err)
	}
	var up struct {
		Type string `json:"type"`
		Ref  string `json:"ref"`
		Data struct {
			N int64  `json:"n"`
			P string `json:"p"`
		} `json:"data"`
	}
	u := appendUpFrame(nil, 5, 1234, "xx")
	if err := json.Unmarshal(u, &up); err != nil || up.Type != "up" || up.Ref != "5.1234" || up.Data.N != 5 || up.Data.P != "xx" {
		t.Fatalf("up frame %s: %+v, %v", u, up, err)
	}
	seq, sent, ok := parseRef([]byte(up.Ref))
	if !ok || seq != 5 || sent != 1234 {
		t.Fatalf("parseRef(%q) = %d, %d, %v", up.Ref, seq, sent, ok)
	}
}

func TestSumDelivered(t *testing.T) {
	tests := map[string]int64{
		`{"id":"A","results":[{"uid":"a","delivered":1,"stored":false},{"uid":"b","delivered":0,"stored":false},{"uid":"c","delivered":2,"stored":false}]}`: 3,
		`{"id":"A","delivered":18000}`:                   18000,
		`{"error":{"code":"unavailable","message":"x"}}`: 0,
	}
	for in, want := range tests {
		if got := sumDelivered([]byte(in)); got != want {
			t.Errorf("sumDelivered(%s) = %d, want %d", in, got, want)
		}
	}
}

func TestAppendMaskedText(t *testing.T) {
	for _, n := range []int{0, 5, 125, 126, 1000, 70000} {
		payload := bytes.Repeat([]byte("a"), n)
		frame := appendMaskedText(nil, payload, [4]byte{1, 2, 3, 4})
		r := bytes.NewReader(frame)
		h, err := ws.ReadHeader(r)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		if !h.Fin || h.OpCode != ws.OpText || !h.Masked || h.Length != int64(n) || h.Mask != [4]byte{1, 2, 3, 4} {
			t.Fatalf("%d bytes: header %+v", n, h)
		}
		got := make([]byte, n)
		if _, err := r.Read(got); n > 0 && err != nil {
			t.Fatal(err)
		}
		ws.Cipher(got, h.Mask, 0)
		if !bytes.Equal(got, payload) || r.Len() != 0 {
			t.Fatalf("%d bytes: payload does not round-trip", n)
		}
	}
}

func TestRouteInternalURL(t *testing.T) {
	got, err := routeInternalURL("", "http://127.0.0.1:8080")
	if err != nil || got != "http://127.0.0.1:9080" {
		t.Fatalf("got %q, %v", got, err)
	}
	if got, _ := routeInternalURL("http://x:1/", "http://127.0.0.1:8080"); got != "http://x:1" {
		t.Fatalf("flag ignored: %q", got)
	}
	if _, err := routeInternalURL("", "http://host"); err == nil {
		t.Fatal("no port accepted")
	}
}

func TestPickRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	all := []string{"a", "b", "c", "d", "e", "f", "g"}
	perm := slices.Clone(all)
	seen := map[string]bool{}
	for range 200 {
		got := pickRandom(rng, perm, 3)
		if len(got) != 3 || got[0] == got[1] || got[1] == got[2] || got[0] == got[2] {
			t.Fatalf("not 3 distinct: %v", got)
		}
		for _, g := range got {
			seen[g] = true
		}
		sorted := slices.Sorted(slices.Values(perm))
		if !slices.Equal(sorted, all) {
			t.Fatalf("perm is no longer a permutation: %v", perm)
		}
	}
	if len(seen) != len(all) {
		t.Fatalf("only %d of %d elements ever picked", len(seen), len(all))
	}
	if got := pickRandom(rng, perm, 10); len(got) != len(all) {
		t.Fatalf("k over n gave %d", len(got))
	}
}

func TestLoadResultAdd(t *testing.T) {
	a := loadResult{Pushes: 1, InWindow: 1, PerSecond: []int64{1, 2}, Errors: map[string]int{"x": 1}, Open: 3}
	a.add(&loadResult{Pushes: 2, InWindow: 2, PerSecond: []int64{10, 20, 30}, Errors: map[string]int{"x": 1, "y": 2}, Open: 4, Lost: map[string]int{"read_eof": 1}})
	want := loadResult{Pushes: 3, InWindow: 3, PerSecond: []int64{11, 22, 30}, Errors: map[string]int{"x": 2, "y": 2}, Open: 7, Lost: map[string]int{"read_eof": 1}}
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("got %+v\nwant %+v", a, want)
	}
}

// The worker's recorder, fed frames as its readers would: window, latency, per-second counts, errors.
func TestRecorder(t *testing.T) {
	w := &worker{spec: workerSpec{Mode: modePush}}
	w.rec.reset()
	base := time.Date(2026, 11, 21, 7, 0, 0, 0, time.UTC).UnixNano()
	w.rec.win = measureCmd{From: base - int64(time.Second), Start: base, End: base + int64(10*time.Second)}
	c := &conn{}
	push := func(sent int64) []byte {
		return []byte(`{"type":"push","id":"X","data":{"t":` + strconv.FormatInt(sent, 10) + `},"ts":1}`)
	}
	w.onFrame(c, push(base-1), base+int64(time.Millisecond))                       // warm-up: out of the window
	w.onFrame(c, push(base), base+int64(2*time.Millisecond))                       // 2 ms, second 0
	w.onFrame(c, push(base+int64(time.Second)), base+int64(1004*time.Millisecond)) // 4 ms, second 1
	w.onFrame(c, []byte(`{"type":"error","code":"rate_limited","message":"m"}`), base)
	w.onFrame(c, []byte(`{"type":"pong"}`), base)
	w.onFrame(c, nil, base)
	r := w.rec.res
	if r.Pushes != 3 || r.InWindow != 2 || r.OutOfWindow != 1 || !slices.Equal(r.PerSecond, []int64{1, 1}) {
		t.Fatalf("result %+v", r)
	}
	if r.Errors["rate_limited"] != 1 || r.Frames["oversized"] != 1 || len(r.Frames) != 1 {
		t.Fatalf("errors %v frames %v", r.Errors, r.Frames)
	}
	near := func(got, want int64) bool { return got >= want && got <= want+want/1000 } // HDR: 3 digits
	if w.rec.lat.N() != 2 || !near(w.rec.lat.Quantile(1), 4000) || !near(w.rec.lat.Quantile(0.5), 2000) {
		t.Fatalf("latency n %d max %d", w.rec.lat.N(), w.rec.lat.Quantile(1))
	}
}

func TestRecorderUpstreamReleasesWindow(t *testing.T) {
	w := &worker{spec: workerSpec{Mode: modeUpstream, Backoff: 100 * time.Millisecond}}
	w.rec.reset()
	w.rec.win = measureCmd{Start: 1000, End: 2000}
	c := &conn{slots: make(chan struct{}, 3), done: make(chan struct{})}
	for range 3 {
		c.slots <- struct{}{}
	}
	w.onFrame(c, []byte(`{"type":"up_ack","ref":"`+string(appendRef(nil, 1, 1500))+`","id":"I"}`), 1500+5000)
	w.onFrame(c, []byte(`{"type":"error","code":"rate_limited","message":"m"}`), 1600)
	if len(c.slots) != 1 {
		t.Fatalf("%d slots taken, want 1", len(c.slots))
	}
	if c.backoff.Load() != 1600+int64(100*time.Millisecond) {
		t.Fatalf("backoff %d", c.backoff.Load())
	}
	if w.rec.res.UpAcks != 1 || w.rec.res.InWindow != 1 || w.rec.lat.Quantile(1) != 5 {
		t.Fatalf("result %+v, latency max %d", w.rec.res, w.rec.lat.Quantile(1))
	}
}

// The poller's frame cutting, fed the bytes of a stream in awkward pieces.
func TestPollerConsume(t *testing.T) {
	w := &worker{spec: workerSpec{Mode: modePush}, lost: map[string]int{}}
	w.rec.reset()
	w.rec.win = measureCmd{Start: 1, End: 1 << 62}
	np, err := netpoll.New()
	if err != nil {
		t.Fatal(err)
	}
	defer np.Release()
	p := &poller{w: w, np: np, byFD: map[int]*conn{}}
	a, b := net.Pipe()
	defer b.Close()
	c := &conn{nc: a, fd: -1}

	var stream []byte
	for i := range 5 {
		payload := `{"type":"push","id":"X","data":{"t":` + strconv.Itoa(1000+i) + `},"ts":1}`
		raw, _ := ws.CompileFrame(ws.NewTextFrame([]byte(payload)))
		stream = append(stream, raw...)
	}
	pong, _ := ws.CompileFrame(ws.NewTextFrame([]byte(`{"type":"pong"}`)))
	stream = append(stream, pong...)
	for len(stream) > 0 { // 7 bytes at a time: headers and payloads split everywhere
		k := min(7, len(stream))
		if !p.consume(c, slices.Clone(stream[:k]), 5000) {
			t.Fatal("connection ended")
		}
		stream = stream[k:]
	}
	if w.rec.res.Pushes != 5 || w.rec.res.InWindow != 5 || len(c.partial) != 0 {
		t.Fatalf("pushes %d in window %d, %d bytes left", w.rec.res.Pushes, w.rec.res.InWindow, len(c.partial))
	}
	if w.rec.lat.Quantile(1) != 4 { // (5000 − 1000) ns = 4 µs
		t.Fatalf("max latency %d µs", w.rec.lat.Quantile(1))
	}

	closing, _ := ws.CompileFrame(ws.NewCloseFrame(ws.NewCloseFrameBody(1008, "idle timeout")))
	if p.consume(c, closing, 6000) {
		t.Fatal("a close frame did not end the connection")
	}
	if !c.ended.Load() || w.lost["closed_1008"] != 1 {
		t.Fatalf("ended %v, lost %v", c.ended.Load(), w.lost)
	}
}

func TestRoomBodyAndStamps(t *testing.T) {
	body := appendRoomBody(nil, 1700000000123456789, 64)
	var req struct{ Data json.RawMessage }
	if err := json.Unmarshal(body, &req); err != nil || len(req.Data) != 64 {
		t.Fatalf("body %s: data %d bytes, %v; want valid JSON with 64 bytes of data", body, len(req.Data), err)
	}
	frame := `{"type":"room","room":"r","items":[{"id":"a","data":{"t":11,"p":"xx"},"ts":1},{"id":"b","data":{"t":22,"p":""},"ts":2},{"id":"c","data":{"t":33},"ts":3}]}`
	var got []int64
	eachStamp([]byte(frame), func(sent int64) { got = append(got, sent) })
	if !slices.Equal(got, []int64{11, 22, 33}) {
		t.Fatalf("stamps %v", got)
	}
}
