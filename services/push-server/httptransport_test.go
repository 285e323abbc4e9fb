package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/wire"
)

// publicURL is the node's public listener as http://host:port.
func (n *node) publicURL() string {
	return strings.TrimSuffix(strings.Replace(n.wsURL, "ws://", "http://", 1), "/ws")
}

// sseClient reads an event stream frame by frame.
type sseClient struct {
	t       testing.TB
	body    io.ReadCloser
	frames  chan []byte
	welcome wire.Welcome
	n       *node
}

func openSSE(t testing.TB, n *node, uid, device string) *sseClient {
	t.Helper()
	resp, err := http.Get(n.publicURL() + "/sse?token=" + tokenFor(t, uid, device))
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "text/event-stream" {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("sse: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), b)
	}
	c := &sseClient{t: t, body: resp.Body, frames: make(chan []byte, 64), n: n}
	t.Cleanup(func() { resp.Body.Close() })
	go func() {
		defer close(c.frames)
		r := bufio.NewReader(resp.Body)
		var data []byte
		for {
			line, err := r.ReadString('\n')
			if err != nil {
				return
			}
			switch line = strings.TrimRight(line, "\r\n"); {
			case strings.HasPrefix(line, "data: "):
				data = append(data, line[len("data: "):]...)
			case line == "" && data != nil:
				c.frames <- data
				data = nil
			}
		}
	}()
	if err := json.Unmarshal(c.next(), &c.welcome); err != nil || c.welcome.Type != wire.TypeWelcome || c.welcome.Session == "" {
		t.Fatalf("first event %+v (%v), want a welcome with a session", c.welcome, err)
	}
	return c
}

// next is the next frame, failing the test after 5 s; nil once the stream ended.
func (c *sseClient) next() []byte {
	c.t.Helper()
	select {
	case f := <-c.frames:
		return f
	case <-time.After(5 * time.Second):
		c.t.Fatal("no event within 5s")
		return nil
	}
}

func (c *sseClient) nextOfType(typ string) map[string]any {
	c.t.Helper()
	for {
		f := c.next()
		if f == nil {
			c.t.Fatalf("stream ended before a %s frame", typ)
		}
		var m map[string]any
		json.Unmarshal(f, &m)
		if m["type"] == typ {
			return m
		}
	}
}

// send posts body to /send for session and returns the status and the error code of its answer.
func send(t testing.TB, n *node, session, body string, header ...string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, n.publicURL()+"/send?session="+url.QueryEscape(session), strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var e wire.ErrorBody
	json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Error.Code
}

// poll does one GET /poll and returns the frames of its answer, or fails on any status but 200.
func poll(t testing.TB, n *node, query string) []json.RawMessage {
	t.Helper()
	resp, err := http.Get(n.publicURL() + "/poll?" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		t.Fatalf("poll %s: %d %s", query, resp.StatusCode, b)
	}
	var frames []json.RawMessage
	if err := json.Unmarshal(b, &frames); err != nil {
		t.Fatalf("poll answer %s: %v", b, err)
	}
	return frames
}

func frameType(f []byte) string {
	var m struct{ Type string }
	json.Unmarshal(f, &m)
	return m.Type
}

// TestSSE: an event stream gets its welcome with a session, pushes and the answers to what the
// client sends by /send (pong, up_ack, ack to push-route), and its route goes when it closes.
func TestSSE(t *testing.T) {
	pr := newFakePushRoute(t)
	n := startNode(t, "ps-sse", nodeOpts{env: map[string]string{"HERALD_PUSH_ROUTE_URL": pr.url}})
	c := openSSE(t, n, "sse-ann", "browser")
	if rs := lookup(t, n.redis, "sse-ann"); len(rs) != 1 || rs[0].ConnID != c.welcome.ConnID {
		t.Fatalf("routes %+v, want the stream's", rs)
	}
	if res := deliver(t, n, "m-sse-1", `{"line1":"a\nb"}`, "sse-ann"); res.Results[0].Delivered != 1 {
		t.Fatalf("deliver: %+v", res)
	}
	if p := c.nextOfType(wire.TypePush); p["id"] != "m-sse-1" || p["data"].(map[string]any)["line1"] != "a\nb" {
		t.Fatalf("push %v", p)
	}
	if status, code := send(t, n, c.welcome.Session, `[{"type":"ack","id":"m-sse-1"},{"type":"ping"},{"type":"up","ref":"r1","data":{"hi":1}}]`); status != 204 {
		t.Fatalf("send: %d %s", status, code)
	}
	c.nextOfType(wire.TypePong)
	if a := c.nextOfType(wire.TypeUpAck); a["ref"] != "r1" || a["id"] == "" {
		t.Fatalf("up_ack %v", a)
	}
	waitAcks(t, pr, []string{"m-sse-1"}, 5*time.Second)

	// Kicked: a close frame with the code ends the stream, and the route and session go.
	if status := internalCall(t, n, wire.PathKick, wire.KickRequest{UID: "sse-ann"}, nil); status != 200 {
		t.Fatalf("kick: %d", status)
	}
	if cl := c.nextOfType("close"); cl["code"] == nil {
		t.Fatalf("close frame %v", cl)
	}
	if f := c.next(); f != nil {
		t.Fatalf("after close: %s, want the stream's end", f)
	}
	eventually(t, "route removed", func() error {
		if rs := lookup(t, n.redis, "sse-ann"); len(rs) != 0 {
			return fmt.Errorf("routes %+v", rs)
		}
		return nil
	})
	if status, code := send(t, n, c.welcome.Session, `{"type":"ping"}`); status != 401 {
		t.Fatalf("send on a closed session: %d %s, want 401", status, code)
	}
}

// TestLongPoll: a long-poll session is opened by its first poll, gets what was queued since, waits
// for the next frame, answers [] after -poll-timeout, gets pending messages replayed, and is closed
// and unrouted when nobody polls for three heartbeats.
func TestLongPoll(t *testing.T) {
	pr := newFakePushRoute(t)
	n := startNode(t, "ps-poll", nodeOpts{env: map[string]string{
		"HERALD_PUSH_ROUTE_URL": pr.url, "HERALD_POLL_TIMEOUT": "1s", "HERALD_HEARTBEAT": "1",
	}})
	pr.setPending(t, "poll-bo", wire.Message{ID: "stored-1", Data: json.RawMessage(`"kept"`), TS: 1})
	first := poll(t, n, "token="+tokenFor(t, "poll-bo", "browser"))
	var welcome wire.Welcome
	if len(first) == 0 || json.Unmarshal(first[0], &welcome) != nil || welcome.Type != wire.TypeWelcome || welcome.Session == "" {
		t.Fatalf("first poll %s, want the welcome with a session", first)
	}
	session := "session=" + url.QueryEscape(welcome.Session)
	got := map[string]bool{}
	for _, f := range first[1:] {
		got[frameType(f)] = true
	}
	for !got[wire.TypePush] {
		for _, f := range poll(t, n, session) {
			if frameType(f) == wire.TypePush && !strings.Contains(string(f), "stored-1") {
				t.Fatalf("replay %s", f)
			}
			got[frameType(f)] = true
		}
	}

	// A poll waiting when the push comes is answered at once.
	done := make(chan []json.RawMessage, 1)
	go func() { done <- poll(t, n, session) }()
	time.Sleep(200 * time.Millisecond)
	deliver(t, n, "m-poll-1", `{"n":1}`, "poll-bo")
	select {
	case fs := <-done:
		if len(fs) != 1 || !strings.Contains(string(fs[0]), "m-poll-1") {
			t.Fatalf("woken poll got %s", fs)
		}
	case <-time.After(900 * time.Millisecond):
		t.Fatal("the waiting poll was not answered at the push")
	}
	// Nothing queued: [] after the timeout.
	if fs := poll(t, n, session); len(fs) != 0 {
		t.Fatalf("idle poll %s, want []", fs)
	}
	if status, code := send(t, n, welcome.Session, `{"type":"ping"}`); status != 204 {
		t.Fatalf("send: %d %s", status, code)
	}
	if fs := poll(t, n, session); len(fs) != 1 || frameType(fs[0]) != wire.TypePong {
		t.Fatalf("poll after ping %s, want the pong", fs)
	}

	// HEAD matches GET routes in the mux, but opens nothing.
	head, err := http.Head(n.publicURL() + "/poll?token=" + tokenFor(t, "poll-head", "browser"))
	if err != nil {
		t.Fatal(err)
	}
	head.Body.Close()
	if head.StatusCode != 405 || len(lookup(t, n.redis, "poll-head")) != 0 {
		t.Fatalf("HEAD /poll: %d, routes %v; want 405 and no session", head.StatusCode, lookup(t, n.redis, "poll-head"))
	}

	// Nobody polls: closed after three heartbeats, its route removed.
	eventually(t, "abandoned session closed", func() error {
		if rs := lookup(t, n.redis, "poll-bo"); len(rs) != 0 {
			return fmt.Errorf("routes %+v", rs)
		}
		return nil
	})
	// The next poll learns why; the session is gone after that.
	if fs := poll(t, n, session); len(fs) != 1 || frameType(fs[0]) != "close" || !strings.Contains(string(fs[0]), "1008") {
		t.Fatalf("poll after the idle close %s, want the close frame 1008", fs)
	}
	resp, err := http.Get(n.publicURL() + "/poll?" + session)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("poll of a closed session: %d, want 401", resp.StatusCode)
	}
}

// TestHTTPTransportBadInput: every bad request on /send and /poll gets its documented JSON error.
func TestHTTPTransportBadInput(t *testing.T) {
	n := startNode(t, "ps-http-bad", nodeOpts{env: map[string]string{"HERALD_MAX_CONNS_PER_USER": "1", "HERALD_MAX_SEND_BODY": "70000", "HERALD_MAX_FRAME": "69000"}})
	c := openSSE(t, n, "bad-cy", "browser")
	id, _, _ := strings.Cut(c.welcome.Session, ".")
	tests := []struct {
		name, session, body string
		header              []string
		status              int
		code                string
	}{
		{"no session", "", `{"type":"ping"}`, nil, 401, "unauthorized"},
		{"unknown session", "ps-http-bad:nope.secret", `{"type":"ping"}`, nil, 401, "unauthorized"},
		{"stolen session id without its secret", id + ".guessed", `{"type":"ping"}`, nil, 401, "unauthorized"},
		{"bare conn id", id, `{"type":"ping"}`, nil, 401, "unauthorized"},
		{"the token of another user", c.welcome.Session, `{"type":"ping"}`, []string{"Authorization", "Bearer " + tokenFor(t, "someone-else", "d")}, 403, "forbidden"},
		{"an invalid token beside the session", c.welcome.Session, `{"type":"ping"}`, []string{"Authorization", "Bearer junk"}, 401, "unauthorized"},
		{"a frame over -max-frame", c.welcome.Session, `[{"type":"up","ref":"r","data":"` + strings.Repeat("x", 69100) + `"}]`, nil, 413, "body_too_large"},
		{"too large", c.welcome.Session, `{"type":"up","ref":"r","data":"` + strings.Repeat("x", 70000) + `"}`, nil, 413, "body_too_large"},
		{"not JSON", c.welcome.Session, `{"type":`, nil, 400, "malformed_json"},
		{"empty array", c.welcome.Session, `[]`, nil, 400, "invalid_request"},
		{"the session's own token", c.welcome.Session, `{"type":"ping"}`, []string{"Authorization", "Bearer " + tokenFor(t, "bad-cy", "browser")}, 204, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if status, code := send(t, n, tt.session, tt.body, tt.header...); status != tt.status || code != tt.code {
				t.Fatalf("%d %q, want %d %q", status, code, tt.status, tt.code)
			}
		})
	}
	c.nextOfType(wire.TypePong)

	// Frames that parse but are wrong get error frames on the stream, as on a WebSocket.
	if status, _ := send(t, n, c.welcome.Session, `[42,{"type":"warp"},{"type":"up"}]`); status != 204 {
		t.Fatalf("send of bad frames: %d", status)
	}
	for _, want := range []string{wire.CodeMalformed, wire.CodeUnknownType, wire.CodeBadRequest} {
		if e := c.nextOfType(wire.TypeError); e["code"] != want {
			t.Fatalf("error frame %v, want %s", e, want)
		}
	}
	// An event stream is not polled.
	resp, err := http.Get(n.publicURL() + "/poll?session=" + url.QueryEscape(c.welcome.Session))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 400 {
		t.Fatalf("poll of an SSE session: %d, want 400", resp.StatusCode)
	}
	// Refused before it begins: no token.
	resp, err = http.Get(n.publicURL() + "/sse")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("sse without a token: %d %q, want a 401 JSON error", resp.StatusCode, resp.Header.Get("Content-Type"))
	}

	// One session per user here: a long-poll session replaces the stream, which is told why.
	first := poll(t, n, "token="+tokenFor(t, "bad-cy", "other"))
	if len(first) == 0 || frameType(first[0]) != wire.TypeWelcome {
		t.Fatalf("poll %s", first)
	}
	if e := c.nextOfType(wire.TypeError); e["code"] != wire.CodeReplaced {
		t.Fatalf("replaced stream got %v", e)
	}
	if cl := c.nextOfType("close"); cl["code"] != float64(wire.CloseReplaced) {
		t.Fatalf("close %v, want %d", cl, wire.CloseReplaced)
	}
}

// TestClientLeavesSession: a long-poll client that leaves says so by /send, and its session and route
// go at once; a poll still on its way gets the close frame.
func TestClientLeavesSession(t *testing.T) {
	n := startNode(t, "ps-http-leave", nodeOpts{})
	first := poll(t, n, "token="+tokenFor(t, "leaving-gus", "browser"))
	var welcome wire.Welcome
	json.Unmarshal(first[0], &welcome)
	if status, code := send(t, n, welcome.Session, `{"type":"close"}`); status != 204 {
		t.Fatalf("send close: %d %s", status, code)
	}
	if rs := lookup(t, n.redis, "leaving-gus"); len(rs) != 0 {
		eventually(t, "route removed", func() error {
			if rs := lookup(t, n.redis, "leaving-gus"); len(rs) != 0 {
				return fmt.Errorf("routes %+v", rs)
			}
			return nil
		})
	}
	fs := poll(t, n, "session="+url.QueryEscape(welcome.Session))
	if len(fs) != 1 || frameType(fs[0]) != "close" || !strings.Contains(string(fs[0]), `"code":1000`) {
		t.Fatalf("poll after leaving %s, want the close frame 1000", fs)
	}
}

// TestHTTPTransportCORS: pages from -allowed-origins may use the transports (preflight included);
// others are refused with a JSON error before any session opens.
func TestHTTPTransportCORS(t *testing.T) {
	const page, other = "http://app.example", "http://evil.example"
	n := startNode(t, "ps-http-cors", nodeOpts{env: map[string]string{"HERALD_ALLOWED_ORIGINS": page}})
	get := func(origin, path string) *http.Response {
		req, _ := http.NewRequest(http.MethodGet, n.publicURL()+path, nil)
		req.Header.Set("Origin", origin)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	tok := tokenFor(t, "cors-di", "browser")
	if resp := get(other, "/poll?token="+tok); resp.StatusCode != 403 {
		t.Fatalf("poll from %s: %d, want 403", other, resp.StatusCode)
	}
	if resp := get(other, "/sse?token="+tok); resp.StatusCode != 403 {
		t.Fatalf("sse from %s: %d, want 403", other, resp.StatusCode)
	}
	if rs := lookup(t, n.redis, "cors-di"); len(rs) != 0 {
		t.Fatalf("a refused page left routes: %+v", rs)
	}
	resp := get(page, "/sse?token="+tok)
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != page {
		t.Fatalf("sse from %s: %d, CORS %q", page, resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	req, _ := http.NewRequest(http.MethodOptions, n.publicURL()+"/send?session=x", nil)
	req.Header.Set("Origin", page)
	req.Header.Set("Access-Control-Request-Method", "POST")
	req.Header.Set("Access-Control-Request-Headers", "content-type")
	pre, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	pre.Body.Close()
	if pre.StatusCode >= 300 || pre.Header.Get("Access-Control-Allow-Origin") != page {
		t.Fatalf("preflight of /send: %d %v", pre.StatusCode, pre.Header)
	}
}

// TestHTTPTransportsDrain: a drain tells an event stream and a waiting long-poll to reconnect, then
// ends both with 1012, as it does WebSockets.
func TestHTTPTransportsDrain(t *testing.T) {
	n := startNode(t, "ps-http-drain", nodeOpts{env: map[string]string{"HERALD_POLL_TIMEOUT": "10s"}})
	stream := openSSE(t, n, "drain-ed", "browser")
	first := poll(t, n, "token="+tokenFor(t, "drain-fay", "browser"))
	var welcome wire.Welcome
	json.Unmarshal(first[0], &welcome)
	waiting := make(chan []json.RawMessage, 1)
	go func() { waiting <- poll(t, n, "session="+url.QueryEscape(welcome.Session)) }()
	time.Sleep(200 * time.Millisecond)

	if status := internalCall(t, n, wire.PathDrain, nil, nil); status != http.StatusAccepted {
		t.Fatalf("drain: %d", status)
	}
	stream.nextOfType(wire.TypeReconnect)
	if cl := stream.nextOfType("close"); cl["code"] != float64(wire.CloseServiceRestart) {
		t.Fatalf("stream close %v", cl)
	}
	// The waiting poll is answered with the reconnect; the close that follows waits for the next.
	var types []string
	for _, f := range <-waiting {
		types = append(types, frameType(f))
	}
	for !slices.Contains(types, "close") {
		for _, f := range poll(t, n, "session="+url.QueryEscape(welcome.Session)) {
			types = append(types, frameType(f))
		}
	}
	if strings.Join(types, ",") != "reconnect,close" {
		t.Fatalf("polls got %v, want reconnect then close", types)
	}
}
