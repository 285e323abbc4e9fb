package main

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/account"
	"github.com/heraldpush/herald/pkg/testenv"
)

func TestLoginAndTokens(t *testing.T) {
	a := startAuth(t, servers{}, nil)
	n := node("ps-login")
	registerNode(t, sharedZK, n)
	ctx := context.Background()
	if err := a.accounts.Create(ctx, "alice", "s3cret-pass"); err != nil {
		t.Fatal(err)
	}
	key, _, err := a.keys.Create(ctx, "test backend")
	if err != nil {
		t.Fatal(err)
	}

	var login reply
	eventually(t, "login once the node is in the ring", func() error {
		login = post(t, a.url+"/v1/login", "", map[string]string{"uid": "alice", "password": "s3cret-pass", "device": "phone"})
		if login.status != http.StatusOK {
			return fmt.Errorf("status %d %s", login.status, login.body)
		}
		return nil
	})
	tokens := post(t, a.url+"/v1/tokens", "Bearer "+key, map[string]string{"uid": "bob", "device": "web-1"})
	if tokens.status != http.StatusOK {
		t.Fatalf("tokens: %d %s", tokens.status, tokens.body)
	}

	for _, c := range []struct {
		name        string
		r           reply
		uid, device string
	}{{"login", login, "alice", "phone"}, {"tokens", tokens, "bob", "web-1"}} {
		t.Run(c.name, func(t *testing.T) {
			resp := decode[tokenResponse](t, c.r)
			if resp.Server.ID != n.ID || resp.Server.WSURL != n.WSURL {
				t.Fatalf("server %+v, want %s at %s", resp.Server, n.ID, n.WSURL)
			}
			claims := verify(t, a.pub, resp.Token)
			if claims.UID != c.uid || claims.Device != c.device {
				t.Fatalf("claims %+v, want uid %s device %s", claims, c.uid, c.device)
			}
			if d := time.Until(resp.ExpiresAt); d < 23*time.Hour || d > 25*time.Hour {
				t.Fatalf("expires_at %v, want about 24h from now", resp.ExpiresAt)
			}
			if !claims.ExpiresAt.Equal(resp.ExpiresAt) {
				t.Fatalf("expires_at %v differs from the token's exp %v", resp.ExpiresAt, claims.ExpiresAt)
			}
		})
	}
}

func TestLoginBadInput(t *testing.T) {
	a := startAuth(t, servers{}, map[string]string{"HERALD_MAX_BODY": "512"})
	registerNode(t, sharedZK, node("ps-bad-input"))
	ctx := context.Background()
	if err := a.accounts.Create(ctx, "carol", "right-pass"); err != nil {
		t.Fatal(err)
	}
	if err := a.accounts.Create(ctx, "dave", "right-pass"); err != nil {
		t.Fatal(err)
	}
	if err := a.accounts.SetDisabled(ctx, "dave", true); err != nil {
		t.Fatal(err)
	}
	eventually(t, "ring has the node", func() error {
		if r := post(t, a.url+"/v1/login", "", map[string]string{"uid": "carol", "password": "right-pass", "device": "d"}); r.status != 200 {
			return fmt.Errorf("status %d %s", r.status, r.body)
		}
		return nil
	})

	tests := []struct {
		name       string
		body       any
		wantStatus int
		wantCode   string
	}{
		{"malformed json", `{"uid":"carol",`, 400, "malformed_json"},
		{"not an object", `[1,2]`, 400, "malformed_json"},
		{"empty body", ``, 400, "malformed_json"},
		{"wrong field type", `{"uid":5,"password":"x","device":"d"}`, 400, "malformed_json"},
		{"missing uid", map[string]string{"password": "right-pass", "device": "d"}, 400, "invalid_request"},
		{"missing device", map[string]string{"uid": "carol", "password": "right-pass"}, 400, "invalid_request"},
		{"empty password", map[string]string{"uid": "carol", "password": "", "device": "d"}, 400, "invalid_request"},
		{"uid with a bar", map[string]string{"uid": "ca|rol", "password": "x", "device": "d"}, 400, "invalid_request"},
		{"uid too long", map[string]string{"uid": strings.Repeat("u", 129), "password": "x", "device": "d"}, 400, "invalid_request"},
		{"body over the limit", map[string]string{"uid": "carol", "password": strings.Repeat("p", 600), "device": "d"}, 413, "body_too_large"},
		{"unknown field refused", map[string]any{"uid": "carol", "password": "right-pass", "device": "d", "extra": map[string]int{"a": 1}}, 400, "invalid_request"},
		{"wrong password", map[string]string{"uid": "carol", "password": "wrong", "device": "d"}, 401, "bad_credentials"},
		{"unknown uid", map[string]string{"uid": "nobody", "password": "wrong", "device": "d"}, 401, "bad_credentials"},
		{"disabled account", map[string]string{"uid": "dave", "password": "right-pass", "device": "d"}, 403, "account_disabled"},
		{"disabled account, wrong password", map[string]string{"uid": "dave", "password": "nope", "device": "d"}, 401, "bad_credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := post(t, a.url+"/v1/login", "", tt.body)
			if r.status != tt.wantStatus || r.errorCode() != tt.wantCode {
				t.Fatalf("got %d %s, want %d %q", r.status, r.body, tt.wantStatus, tt.wantCode)
			}
		})
	}

	t.Run("wrong password and unknown uid look alike", func(t *testing.T) {
		wrong := post(t, a.url+"/v1/login", "", map[string]string{"uid": "carol", "password": "wrong", "device": "d"})
		unknown := post(t, a.url+"/v1/login", "", map[string]string{"uid": "nobody", "password": "wrong", "device": "d"})
		if string(wrong.body) != string(unknown.body) {
			t.Fatalf("bodies differ: %s vs %s", wrong.body, unknown.body)
		}
	})

	t.Run("unknown endpoint", func(t *testing.T) {
		r := post(t, a.url+"/v1/nope", "", `{}`)
		if r.status != 404 || r.errorCode() != "not_found" {
			t.Fatalf("got %d %s", r.status, r.body)
		}
	})
}

func TestTokensBadInput(t *testing.T) {
	a := startAuth(t, servers{}, nil)
	registerNode(t, sharedZK, node("ps-tokens"))
	ctx := context.Background()
	live, _, err := a.keys.Create(ctx, "live")
	if err != nil {
		t.Fatal(err)
	}
	revoked, k, err := a.keys.Create(ctx, "revoked")
	if err != nil {
		t.Fatal(err)
	}
	if err := a.keys.Revoke(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	ok := map[string]string{"uid": "erin", "device": "d"}
	eventually(t, "ring has the node", func() error {
		if r := post(t, a.url+"/v1/tokens", "Bearer "+live, ok); r.status != 200 {
			return fmt.Errorf("status %d %s", r.status, r.body)
		}
		return nil
	})
	tests := []struct {
		name       string
		authz      string
		body       any
		wantStatus int
		wantCode   string
	}{
		{"no key", "", ok, 401, "unauthorized"},
		{"not bearer", "Basic " + live, ok, 401, "unauthorized"},
		{"unknown key", "Bearer hk_doesnotexist", ok, 401, "unauthorized"},
		{"garbage key", "Bearer x", ok, 401, "unauthorized"},
		{"revoked key", "Bearer " + revoked, ok, 401, "unauthorized"},
		{"malformed json", "Bearer " + live, `{"uid"`, 400, "malformed_json"},
		{"missing uid", "Bearer " + live, map[string]string{"device": "d"}, 400, "invalid_request"},
		{"empty device", "Bearer " + live, map[string]string{"uid": "erin", "device": ""}, 400, "invalid_request"},
		{"unknown field refused", "Bearer " + live, map[string]any{"uid": "erin", "device": "d", "x": true}, 400, "invalid_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := post(t, a.url+"/v1/tokens", tt.authz, tt.body)
			if r.status != tt.wantStatus || r.errorCode() != tt.wantCode {
				t.Fatalf("got %d %s, want %d %q", r.status, r.body, tt.wantStatus, tt.wantCode)
			}
		})
	}
}

func TestLoginRateLimits(t *testing.T) {
	a := startAuth(t, servers{}, map[string]string{"HERALD_LOGIN_RATE_PER_UID": "3", "HERALD_LOGIN_RATE_PER_IP": "8"})
	bad := func(uid string) reply {
		return post(t, a.url+"/v1/login", "", map[string]string{"uid": uid, "password": "guess", "device": "d"})
	}
	for i := range 3 {
		if r := bad("frank"); r.status != 401 {
			t.Fatalf("attempt %d: %d %s, want 401", i, r.status, r.body)
		}
	}
	r := bad("frank")
	if r.status != 429 || r.errorCode() != "rate_limited" {
		t.Fatalf("4th attempt for one uid: %d %s, want 429", r.status, r.body)
	}
	if s, err := strconv.Atoi(r.header.Get("Retry-After")); err != nil || s < 1 || s > 20 {
		t.Fatalf("Retry-After %q, want whole seconds up to the refill interval", r.header.Get("Retry-After"))
	}
	// The address has used 4 of its 8; a spray over other uids hits the per-address limit.
	var limited bool
	for i := range 5 {
		if r := bad(fmt.Sprint("spray", i)); r.status == 429 {
			limited = true
			break
		}
	}
	if !limited {
		t.Fatal("no 429 from the per-address limit")
	}
}

func TestUnknownUIDTakesTheSameWork(t *testing.T) {
	// A real cost, so the bcrypt work dominates the request time and the two paths can be compared.
	a := startAuth(t, servers{}, map[string]string{"HERALD_BCRYPT_COST": "8", "HERALD_LOGIN_RATE_PER_UID": "1000"})
	store, err := account.NewStore(a.db, 8)
	if err != nil {
		t.Fatal(err)
	}
	if err := store.Create(context.Background(), "grace", "right-pass"); err != nil {
		t.Fatal(err)
	}
	median := func(uid string) time.Duration {
		var ds []time.Duration
		for range 3 {
			start := time.Now()
			if r := post(t, a.url+"/v1/login", "", map[string]string{"uid": uid, "password": "wrong", "device": "d"}); r.status != 401 {
				t.Fatalf("%d %s", r.status, r.body)
			}
			ds = append(ds, time.Since(start))
		}
		sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
		return ds[1]
	}
	wrong, unknown := median("grace"), median("no-such-user")
	// Without the dummy comparison an unknown uid answers in well under a tenth of the time.
	if unknown < wrong/2 {
		t.Fatalf("unknown uid took %v, wrong password %v: the unknown path skips the bcrypt work", unknown, wrong)
	}
}

func TestNoPushServer(t *testing.T) {
	a := startAuth(t, servers{zk: testenv.NewZooKeeper(t)}, nil)
	ctx := context.Background()
	if err := a.accounts.Create(ctx, "heidi", "pw"); err != nil {
		t.Fatal(err)
	}
	r := post(t, a.url+"/v1/login", "", map[string]string{"uid": "heidi", "password": "pw", "device": "d"})
	if r.status != 503 || r.errorCode() != "no_push_server" {
		t.Fatalf("login with no node: %d %s, want 503 no_push_server", r.status, r.body)
	}
}

// TestFailedNodeIsAvoided: a client that names the node that just failed it gets another one for that
// request, while ZooKeeper still lists the failed node; others keep their node.
func TestFailedNodeIsAvoided(t *testing.T) {
	zk := testenv.NewZooKeeper(t)
	a := startAuth(t, servers{zk: zk}, nil)
	na, nb := node("ps-fail-a"), node("ps-fail-b")
	registerNode(t, zk, na)
	registerNode(t, zk, nb)
	key, _, err := a.keys.Create(context.Background(), "failover")
	if err != nil {
		t.Fatal(err)
	}
	mint := func(failed string) (int, string) {
		r := post(t, a.url+"/v1/tokens", "Bearer "+key, map[string]string{"uid": "carol", "device": "d", "failed_node": failed})
		if r.status != http.StatusOK {
			return r.status, r.errorCode()
		}
		return r.status, decode[tokenResponse](t, r).Server.ID
	}
	var owner string
	eventually(t, "both nodes in the ring", func() error {
		seen := map[string]bool{}
		for _, uid := range []string{"u1", "u2", "u3", "u4", "u5", "u6", "u7", "u8"} {
			r := post(t, a.url+"/v1/tokens", "Bearer "+key, map[string]string{"uid": uid, "device": "d"})
			if r.status == http.StatusOK {
				seen[decode[tokenResponse](t, r).Server.ID] = true
			}
		}
		if len(seen) != 2 {
			return fmt.Errorf("nodes handed out: %v", seen)
		}
		_, owner = mint("")
		return nil
	})
	other := na.ID
	if owner == na.ID {
		other = nb.ID
	}
	if _, got := mint(owner); got != other {
		t.Fatalf("with failed_node %s got %s, want %s", owner, got, other)
	}
	if _, got := mint(other); got != owner {
		t.Fatalf("naming a node that is not carol's moved her to %s, want %s", got, owner)
	}
	if _, got := mint(""); got != owner {
		t.Fatalf("without failed_node got %s, want %s again", got, owner)
	}
	if status, code := mint("bad|node"); status != http.StatusBadRequest || code != "invalid_request" {
		t.Fatalf("a malformed failed_node: %d %s, want 400 invalid_request", status, code)
	}
}

// Pages on -allowed-origins may log in from the browser (preflight included); other origins are
// refused with a JSON error; /v1/tokens never answers CORS, since an API key does not belong in a page.
func TestLoginCORS(t *testing.T) {
	const page, other = "https://app.example", "https://evil.example"
	a := startAuth(t, servers{}, map[string]string{"HERALD_ALLOWED_ORIGINS": page + ", https://other-app.example"})
	registerNode(t, sharedZK, node("ps-cors"))
	ctx := context.Background()
	if err := a.accounts.Create(ctx, "corinne", "pw-cors"); err != nil {
		t.Fatal(err)
	}
	key, _, err := a.keys.Create(ctx, "cors backend")
	if err != nil {
		t.Fatal(err)
	}
	send := func(method, path, origin string, header http.Header, body string) (*http.Response, []byte) {
		t.Helper()
		req, _ := http.NewRequest(method, a.url+path, strings.NewReader(body))
		for k, v := range header {
			req.Header[k] = v
		}
		if origin != "" {
			req.Header.Set("Origin", origin)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}

	preflight := http.Header{"Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"content-type"}}
	resp, _ := send(http.MethodOptions, "/v1/login", page, preflight, "")
	if resp.StatusCode/100 != 2 || resp.Header.Get("Access-Control-Allow-Origin") != page || !strings.Contains(resp.Header.Get("Access-Control-Allow-Methods"), "POST") {
		t.Fatalf("preflight from %s: %d %v", page, resp.StatusCode, resp.Header)
	}
	login := `{"uid":"corinne","password":"pw-cors","device":"web"}`
	eventually(t, "a login from the allowed page", func() error {
		resp, b := send(http.MethodPost, "/v1/login", page, http.Header{"Content-Type": {"application/json"}}, login)
		if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != page {
			return fmt.Errorf("%d %s %v", resp.StatusCode, b, resp.Header)
		}
		return nil
	})
	for _, method := range []string{http.MethodOptions, http.MethodPost} {
		resp, b := send(method, "/v1/login", other, preflight, login)
		if resp.StatusCode != 403 || resp.Header.Get("Access-Control-Allow-Origin") != "" || !strings.Contains(string(b), `"forbidden"`) {
			t.Errorf("%s from %s: %d %s %v, want 403 forbidden without CORS headers", method, other, resp.StatusCode, b, resp.Header)
		}
	}
	// Not from a browser: no Origin, no CORS, as before.
	if resp, b := send(http.MethodPost, "/v1/login", "", nil, login); resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("login without an Origin: %d %s", resp.StatusCode, b)
	}
	// /v1/tokens: no CORS for anyone, preflight included.
	resp, _ = send(http.MethodPost, "/v1/tokens", page, http.Header{"Authorization": {"Bearer " + key}}, `{"uid":"u","device":"d"}`)
	if resp.StatusCode != 200 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("tokens from a page: %d, CORS %q; want no CORS", resp.StatusCode, resp.Header.Get("Access-Control-Allow-Origin"))
	}
	if resp, _ := send(http.MethodOptions, "/v1/tokens", page, preflight, ""); resp.StatusCode != 405 || resp.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("preflight of /v1/tokens: %d %v, want 405 without CORS", resp.StatusCode, resp.Header)
	}
}
