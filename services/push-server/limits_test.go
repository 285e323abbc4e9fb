package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/heraldpush/herald/pkg/token"
	"github.com/heraldpush/herald/pkg/wire"
)

func TestBadFrames(t *testing.T) {
	n := startNode(t, "ps-frames", nodeOpts{env: map[string]string{"HERALD_MAX_FRAME": "1536", "HERALD_MAX_UP_DATA": "512"}})

	t.Run("malformed and unknown frames get error frames and the connection stays", func(t *testing.T) {
		c := dial(t, n, "frames-a", "d")
		for _, tt := range []struct{ send, code string }{
			{`not json`, wire.CodeMalformed},
			{`[1,2,3]`, wire.CodeMalformed},
			{`{"no":"type"}`, wire.CodeMalformed},
			{`{"type":42}`, wire.CodeMalformed},
			{`{"type":"dance"}`, wire.CodeUnknownType},
			{`{"type":"ack"}`, wire.CodeBadRequest},
			{`{"type":"up","data":{"x":1}}`, wire.CodeBadRequest},
			{`{"type":"up","ref":"r1"}`, wire.CodeBadRequest},
			{`{"type":"up","ref":"r1","data":null}`, wire.CodeBadRequest},
		} {
			c.send(tt.send)
			e := c.nextOfType("error")
			if e["code"] != tt.code {
				t.Fatalf("%s: error %v, want code %s", tt.send, e, tt.code)
			}
		}
		c.send(`{"type":"ack","id":"m1","extra":"ignored"}`)
		c.send(`{"type":"ping"}`)
		c.nextOfType("pong") // still open, and the ack raised no error
	})

	t.Run("up error names the ref", func(t *testing.T) {
		c := dial(t, n, "frames-b", "d")
		c.send(`{"type":"up","ref":"abc"}`)
		if e := c.nextOfType("error"); e["ref"] != "abc" {
			t.Fatalf("error %v, want ref abc", e)
		}
	})

	t.Run("oversized frame closes with 1009", func(t *testing.T) {
		c := dial(t, n, "frames-c", "d")
		c.send(`{"type":"up","data":"` + strings.Repeat("x", 2000) + `"}`)
		if code, _ := c.closed(); code != wire.CloseTooBig {
			t.Fatalf("close %d, want 1009", code)
		}
	})

	t.Run("bad UTF-8 closes with 1007", func(t *testing.T) {
		c := dial(t, n, "frames-d", "d")
		if err := wsutil.WriteClientMessage(c.conn, ws.OpText, []byte("{\"type\":\"\xff\xfe\"}")); err != nil {
			t.Fatal(err)
		}
		if code, _ := c.closed(); code != wire.CloseInvalidPayload {
			t.Fatalf("close %d, want 1007", code)
		}
	})

	t.Run("WebSocket ping gets a pong", func(t *testing.T) {
		c := dial(t, n, "frames-e", "d")
		if err := wsutil.WriteClientMessage(c.conn, ws.OpPing, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		h, err := ws.ReadHeader(c.conn)
		if err != nil || h.OpCode != ws.OpPong || h.Length != 2 {
			t.Fatalf("got %+v, %v; want a pong with the ping's payload", h, err)
		}
	})

	t.Run("fragmented message is reassembled", func(t *testing.T) {
		c := dial(t, n, "frames-f", "d")
		parts := []ws.Frame{
			ws.NewFrame(ws.OpText, false, []byte(`{"type":`)),
			ws.NewFrame(ws.OpContinuation, false, []byte(`"pi`)),
			ws.NewFrame(ws.OpContinuation, true, []byte(`ng"}`)),
		}
		for _, f := range parts {
			if err := ws.WriteFrame(c.conn, ws.MaskFrame(f)); err != nil {
				t.Fatal(err)
			}
		}
		c.nextOfType("pong")
	})

	t.Run("unmasked client frame closes with 1002", func(t *testing.T) {
		c := dial(t, n, "frames-g", "d")
		if err := ws.WriteFrame(c.conn, ws.NewTextFrame([]byte(`{"type":"ping"}`))); err != nil {
			t.Fatal(err)
		}
		if code, _ := c.closed(); code != wire.CloseProtocolError {
			t.Fatalf("close %d, want 1002", code)
		}
	})
}

func TestRateLimit(t *testing.T) {
	n := startNode(t, "ps-rate", nodeOpts{env: map[string]string{"HERALD_MSG_RATE": "1", "HERALD_MSG_BURST": "3", "HERALD_RATE_STRIKES": "5"}})
	c := dial(t, n, "rater", "d")
	for range 3 {
		c.send(`{"type":"ping"}`)
		c.nextOfType("pong")
	}
	c.send(`{"type":"ping"}`)
	if e := c.nextOfType("error"); e["code"] != wire.CodeRateLimited {
		t.Fatalf("4th message: %v, want rate_limited", e)
	}
	// A client that keeps going after being told is closed.
	for range 10 {
		if err := wsutil.WriteClientText(c.conn, []byte(`{"type":"ping"}`)); err != nil {
			break
		}
	}
	if code, _ := c.closed(); code != wire.ClosePolicy {
		t.Fatalf("close %d, want 1008", code)
	}
}

func TestUpgradeRefusals(t *testing.T) {
	n := startNode(t, "ps-refuse", nodeOpts{env: map[string]string{"HERALD_ALLOWED_ORIGINS": "https://app.example", "HERALD_MAX_CONNS": "3"}})
	expired := func() string {
		s := *signer
		s.Now = func() time.Time { return time.Now().Add(-2 * time.Hour) }
		tok, _, err := s.Sign("u", "d")
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}()
	tests := []struct {
		name   string
		url    string
		header http.Header
		status int
	}{
		{"no token", n.wsURL, nil, 401},
		{"garbage token", n.wsURL + "?token=abc", nil, 401},
		{"expired token", n.wsURL + "?token=" + expired, nil, 401},
		{"wrong path", strings.TrimSuffix(n.wsURL, "/ws") + "/other?token=" + tokenFor(t, "u", "d"), nil, 404},
		{"bad encoding", n.wsURL + "?encoding=xml&token=" + tokenFor(t, "u", "d"), nil, 400},
		{"origin not allowed", n.wsURL + "?token=" + tokenFor(t, "u", "d"), http.Header{"Origin": {"https://evil.example"}}, 403},
		{"origin allowed", n.wsURL + "?token=" + tokenFor(t, "u", "d"), http.Header{"Origin": {"https://app.example"}}, 101},
		{"bearer header", n.wsURL, http.Header{"Authorization": {"Bearer " + tokenFor(t, "u", "d2")}}, 101},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := ws.Dialer{Header: ws.HandshakeHeaderHTTP(tt.header)}
			conn, _, _, err := d.Dial(t.Context(), tt.url)
			status := 101
			if se, ok := err.(ws.StatusError); ok {
				status = int(se)
			} else if err != nil {
				t.Fatal(err)
			}
			if conn != nil {
				conn.Close()
			}
			if status != tt.status {
				t.Fatalf("status %d, want %d", status, tt.status)
			}
		})
	}

	t.Run("node connection limit", func(t *testing.T) {
		var open []*wsClient
		for i := 0; ; i++ {
			c, status := tryDial(t, n.wsURL+"?token="+tokenFor(t, fmt.Sprint("full-", i), "d"))
			if status == 503 {
				break
			}
			open = append(open, c)
			if i > 5 {
				t.Fatal("no 503 after the connection limit")
			}
		}
		if len(open) > 3 {
			t.Fatalf("%d connections accepted with a limit of 3", len(open))
		}
	})
}

func TestPerUserLimitReplacesOldest(t *testing.T) {
	n := startNode(t, "ps-per-user", nodeOpts{env: map[string]string{"HERALD_MAX_CONNS_PER_USER": "2"}})
	first := dial(t, n, "many", "a")
	second := dial(t, n, "many", "b")
	dial(t, n, "many", "c")
	if e := first.nextOfType("error"); e["code"] != wire.CodeReplaced {
		t.Fatalf("oldest got %v, want error replaced", e)
	}
	if code, _ := first.closed(); code != wire.CloseReplaced {
		t.Fatalf("oldest closed with %d, want %d", code, wire.CloseReplaced)
	}
	eventually(t, "two routes left", func() error {
		if rs := lookup(t, n.redis, "many"); len(rs) != 2 {
			return fmt.Errorf("routes %+v", rs)
		}
		return nil
	})
	second.send(`{"type":"ping"}`)
	second.nextOfType("pong")
}

func TestIdleConnectionClosed(t *testing.T) {
	n := startNode(t, "ps-idle", nodeOpts{env: map[string]string{"HERALD_HEARTBEAT": "1"}})
	quiet := dial(t, n, "quiet", "d")
	chatty := dial(t, n, "chatty", "d")
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(500 * time.Millisecond):
				wsutil.WriteClientMessage(chatty.conn, ws.OpPing, nil) // WebSocket pings keep it alive too
			}
		}
	}()
	if code, reason := quiet.closed(); code != wire.ClosePolicy || !strings.Contains(reason, "idle") {
		t.Fatalf("idle close %d %q, want 1008 idle timeout", code, reason)
	}
	if rs := lookup(t, n.redis, "chatty"); len(rs) != 1 {
		t.Fatalf("chatty client lost its route: %+v", rs)
	}
}

func TestSlowReader(t *testing.T) {
	payload := `"` + strings.Repeat("x", 1000) + `"`
	t.Run("gets every message in order when the queue holds them", func(t *testing.T) {
		n := startNode(t, "ps-slow-ok", nodeOpts{env: map[string]string{"HERALD_MAX_QUEUE": "8388608"}})
		c, _ := tryDialWith(t, smallReceiveBuffer(), n.wsURL+"?token="+tokenFor(t, "slow-ok", "d"))
		for i := range 3000 {
			deliver(t, n, fmt.Sprint(i), payload, "slow-ok")
		}
		for i := range 3000 {
			var p wire.Push
			json.Unmarshal(c.next(), &p)
			if p.ID != fmt.Sprint(i) {
				t.Fatalf("message %d arrived as %q", i, p.ID)
			}
		}
	})
	t.Run("is closed when it falls too far behind", func(t *testing.T) {
		n := startNode(t, "ps-slow-cut", nodeOpts{env: map[string]string{"HERALD_MAX_QUEUE": "65536"}})
		c, _ := tryDialWith(t, smallReceiveBuffer(), n.wsURL+"?token="+tokenFor(t, "slow-cut", "d"))
		for i := range 3000 {
			deliver(t, n, fmt.Sprint(i), payload, "slow-cut")
		}
		// What arrived before the cut is in order; then the close frame or the end of the stream.
		c.conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		next := 0
		for {
			b, op, err := wsutil.ReadServerData(c.conn)
			if err != nil || op != ws.OpText {
				break
			}
			var p wire.Push
			json.Unmarshal(b, &p)
			if p.ID != fmt.Sprint(next) {
				t.Fatalf("message %d arrived as %q", next, p.ID)
			}
			next++
		}
		if next == 3000 {
			t.Fatal("every message arrived: the queue limit did not apply")
		}
		eventually(t, "slow client's route removed", func() error {
			if rs := lookup(t, n.redis, "slow-cut"); len(rs) != 0 {
				return fmt.Errorf("routes %+v", rs)
			}
			return nil
		})
	})
}

func TestBinaryEncoding(t *testing.T) {
	n := startNode(t, "ps-binary", nodeOpts{})
	raw, br, _, err := ws.Dial(t.Context(), n.wsURL+"?encoding=binary&token="+tokenFor(t, "bin", "d"))
	if err != nil {
		t.Fatal(err)
	}
	var conn net.Conn = raw
	if br != nil {
		conn = bufferedConn{Conn: raw, r: br}
	}
	defer conn.Close()
	b, op, err := wsutil.ReadServerData(conn)
	if err != nil || op != ws.OpBinary || !bytes.Contains(b, []byte(`"welcome"`)) {
		t.Fatalf("welcome as %v %s %v, want a binary frame", op, b, err)
	}
	deliver(t, n, "b1", `{"k":1}`, "bin")
	b, op, err = wsutil.ReadServerData(conn)
	if err != nil || op != ws.OpBinary || !bytes.Contains(b, []byte(`"b1"`)) {
		t.Fatalf("push as %v %s %v, want a binary frame", op, b, err)
	}
}

// TestRefusedTokensSayWhy: a refused upgrade says which check the token failed, and the node counts
// refusals by reason, so an operator debugging a client can tell a rotated key from a garbled token.
func TestRefusedTokensSayWhy(t *testing.T) {
	n := startNode(t, "ps-refuse-why", nodeOpts{})
	_, otherPriv, err := token.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	foreign, _, err := token.NewSigner(otherPriv, time.Hour).Sign("u", "d")
	if err != nil {
		t.Fatal(err)
	}
	good := strings.Split(tokenFor(t, "u", "d"), ".")
	forged := good[0] + "." + good[1] + "." + strings.Split(foreign, ".")[2]
	for reason, c := range map[string]struct{ tok, says string }{
		"unknown_key":   {foreign, "key this node does not know"},
		"bad_signature": {forged, "signature does not match"},
		"malformed":     {"abc", "not a well-formed JWT"},
	} {
		var body []byte
		d := ws.Dialer{OnStatusError: func(status int, reason []byte, resp io.Reader) { body, _ = io.ReadAll(resp) }}
		_, _, _, err := d.Dial(t.Context(), n.wsURL+"?token="+c.tok)
		if se, ok := err.(ws.StatusError); !ok || int(se) != 401 || !strings.Contains(string(body), c.says) {
			t.Errorf("%s: %v, body %q; want 401 saying %q", reason, err, body, c.says)
		}
	}
	resp, err := http.Get(n.internalURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	metrics, _ := io.ReadAll(resp.Body)
	for _, reason := range []string{"unknown_key", "bad_signature", "malformed"} {
		if !strings.Contains(string(metrics), `herald_ws_refused_total{reason="`+reason+`"} 1`) {
			t.Errorf("no refusal counted for %s", reason)
		}
	}
}

// The public listener answers plain HTTP the way every Herald listener does: probes for a load balancer
// in front of it, and JSON errors (with one Content-Type) for whatever is not an upgrade Herald admits.
func TestPublicListenerSpeaksPlainHTTP(t *testing.T) {
	n := startNode(t, "ps-plain-http", nodeOpts{})
	base := strings.TrimSuffix(strings.Replace(n.wsURL, "ws://", "http://", 1), "/ws")
	tests := []struct {
		name, method, path string
		status             int
		code, header       string // the error code in the JSON body, or a header the answer must carry
	}{
		{"health", "GET", "/healthz", 200, "", ""},
		{"ready", "GET", "/readyz", 200, "", ""},
		{"plain GET of the endpoint", "GET", "/ws", 400, "invalid_request", ""},
		{"POST to the endpoint", "POST", "/ws", 405, "method_not_allowed", "Allow"},
		{"a token but no upgrade", "GET", "/ws?token=abc", 400, "invalid_request", ""},
		{"unknown path", "GET", "/nope", 404, "not_found", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, _ := http.NewRequest(tt.method, base+tt.path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tt.status {
				t.Fatalf("%s %s: %d %s, want %d", tt.method, tt.path, resp.StatusCode, body, tt.status)
			}
			if ct := resp.Header.Values("Content-Type"); len(ct) != 1 || ct[0] != "application/json" {
				t.Errorf("Content-Type %q, want one application/json", ct)
			}
			var e struct{ Error struct{ Code string } }
			if err := json.Unmarshal(body, &e); err != nil || e.Error.Code != tt.code {
				t.Errorf("body %s: code %q, want %q", body, e.Error.Code, tt.code)
			}
			if tt.header != "" && resp.Header.Get(tt.header) == "" {
				t.Errorf("no %s header", tt.header)
			}
		})
	}

	// A refused upgrade carries one Content-Type too (gobwas writes its own text/plain one otherwise).
	raw, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	fmt.Fprintf(raw, "GET /ws?token=abc HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(raw), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 401 || len(resp.Header.Values("Content-Type")) != 1 || !strings.Contains(string(body), `"unauthorized"`) {
		t.Fatalf("refused upgrade: %d, Content-Type %q, body %s", resp.StatusCode, resp.Header.Values("Content-Type"), body)
	}

	// Draining: the public /readyz says not ready, so a load balancer stops sending devices.
	if status := internalCall(t, n, wire.PathDrain, nil, nil); status != http.StatusAccepted {
		t.Fatalf("drain: %d", status)
	}
	eventually(t, "public /readyz failing while draining", func() error {
		resp, err := http.Get(base + "/readyz")
		if err != nil {
			return nil // the node has finished draining and exited: also not ready
		}
		defer resp.Body.Close()
		if resp.StatusCode != 503 {
			return fmt.Errorf("readyz %d", resp.StatusCode)
		}
		return nil
	})
}
