package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/testenv"
	"github.com/heraldpush/herald/pkg/wire"
)

func TestLoginSessionAndCSRF(t *testing.T) {
	b := newBrowser(t, adminURL)

	r := b.get("/accounts?q=x")
	if r.status != http.StatusSeeOther || r.header.Get("Location") != "/login?next=%2Faccounts%3Fq%3Dx" {
		t.Fatalf("page without login: %d %s", r.status, r.header.Get("Location"))
	}
	page := b.get("/login")
	cookie := page.header.Get("Set-Cookie")
	for _, want := range []string{cookieName + "=", "HttpOnly", "SameSite=Strict", "Path=/"} {
		if !strings.Contains(cookie, want) {
			t.Errorf("cookie %q lacks %s", cookie, want)
		}
	}
	if strings.Contains(cookie, "Secure") {
		t.Errorf("cookie %q is Secure on plain HTTP", cookie)
	}
	if !strings.Contains(page.header.Get("Content-Security-Policy"), "script-src 'self'") {
		t.Errorf("no CSP: %q", page.header.Get("Content-Security-Policy"))
	}
	token := csrfOf(t, page)

	t.Run("login without or with a wrong CSRF token is refused", func(t *testing.T) {
		for _, tok := range []string{"", "wrong"} {
			r := b.postForm("/login", url.Values{"csrf": {tok}, "username": {adminUser}, "password": {adminPassword}})
			if r.status != http.StatusForbidden {
				t.Fatalf("csrf %q: %d", tok, r.status)
			}
		}
	})
	t.Run("wrong password", func(t *testing.T) {
		r := b.postForm("/login", url.Values{"csrf": {token}, "username": {adminUser}, "password": {"not it"}})
		if r.status != http.StatusUnauthorized || !bytes.Contains(r.body, []byte("unknown user or wrong password")) {
			t.Fatalf("%d %.300s", r.status, r.body)
		}
		r = b.postForm("/login", url.Values{"csrf": {token}, "username": {"nobody"}, "password": {adminPassword}})
		if r.status != http.StatusUnauthorized {
			t.Fatalf("unknown user: %d", r.status)
		}
	})
	t.Run("login goes to next", func(t *testing.T) {
		r := b.postForm("/login", url.Values{"csrf": {token}, "username": {adminUser}, "password": {adminPassword}, "next": {"/keys"}})
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/keys" {
			t.Fatalf("%d %s %.200s", r.status, r.header.Get("Location"), r.body)
		}
		// The login page's token belonged to the visitor session; the new session has another.
		if tok := csrfOf(t, b.get("/keys")); tok == token {
			t.Fatal("CSRF token not renewed at login")
		}
	})
	sessionToken := csrfOf(t, b.get("/accounts"))

	t.Run("form POST without or with a wrong CSRF token is refused", func(t *testing.T) {
		for _, tok := range []string{"", "wrong", token} {
			r := b.postForm("/accounts", url.Values{"csrf": {tok}, "uid": {"csrf-victim"}, "password": {"password-1"}})
			if r.status != http.StatusForbidden {
				t.Fatalf("csrf %q: %d", tok, r.status)
			}
		}
		if accountExists(t, "csrf-victim") {
			t.Fatal("account created despite the refusal")
		}
		r := b.postForm("/accounts", url.Values{"csrf": {sessionToken}, "uid": {"csrf-ok"}, "password": {"password-1"}})
		if r.status != http.StatusOK || !accountExists(t, "csrf-ok") {
			t.Fatalf("with the token: %d %.300s", r.status, r.body)
		}
	})
	t.Run("API POST with the cookie needs the CSRF header", func(t *testing.T) {
		r := b.postJSON("/api/v1/keys", map[string]string{"name": "csrf"}, nil)
		if r.status != http.StatusForbidden || r.code() != "forbidden" {
			t.Fatalf("without header: %d %s", r.status, r.body)
		}
		r = b.postJSON("/api/v1/keys", map[string]string{"name": "csrf"}, http.Header{csrfHeader: {"wrong"}})
		if r.status != http.StatusForbidden {
			t.Fatalf("wrong header: %d %s", r.status, r.body)
		}
		r = b.postJSON("/api/v1/keys", map[string]string{"name": "csrf"}, http.Header{csrfHeader: {sessionToken}})
		if r.status != http.StatusCreated {
			t.Fatalf("right header: %d %s", r.status, r.body)
		}
		if r := b.get("/api/v1/overview"); r.status != http.StatusOK {
			t.Fatalf("GET with the cookie: %d %s", r.status, r.body)
		}
	})
	t.Run("logout ends the session", func(t *testing.T) {
		u, _ := url.Parse(adminURL)
		old := b.http.Jar.Cookies(u)
		r := b.postForm("/logout", url.Values{"csrf": {sessionToken}})
		if r.status != http.StatusSeeOther || r.header.Get("Location") != "/login" {
			t.Fatalf("logout: %d", r.status)
		}
		if r := b.get("/"); r.status != http.StatusSeeOther {
			t.Fatalf("after logout: %d", r.status)
		}
		// The old cookie, replayed, is revoked too.
		b.http.Jar.SetCookies(u, old)
		if r := b.get("/"); r.status != http.StatusSeeOther {
			t.Fatalf("replayed cookie after logout: %d", r.status)
		}
	})
	t.Run("Secure cookie behind a TLS proxy", func(t *testing.T) {
		r := newBrowser(t, adminURL).do(http.MethodGet, "/login", nil, http.Header{"X-Forwarded-Proto": {"https"}})
		if !strings.Contains(r.header.Get("Set-Cookie"), "Secure") {
			t.Fatalf("cookie %q", r.header.Get("Set-Cookie"))
		}
	})
}

func accountExists(t testing.TB, uid string) bool {
	t.Helper()
	var n int
	if err := testDB.QueryRow("SELECT COUNT(*) FROM accounts WHERE uid = ?", uid).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n == 1
}

func TestAPIAuthentication(t *testing.T) {
	for _, tc := range []struct {
		name   string
		header http.Header
		status int
		code   string
	}{
		{name: "none", status: 401, code: "unauthorized"},
		{name: "wrong password", header: http.Header{"Authorization": {basic(adminUser, "nope")}}, status: 401, code: "bad_credentials"},
		{name: "API key is not an admin", header: http.Header{"Authorization": {"Bearer " + consoleKey}}, status: 401, code: "unauthorized"},
		{name: "forged cookie", header: http.Header{"Cookie": {cookieName + "=eyJ1Ijoib3BzIn0.bad"}}, status: 401, code: "unauthorized"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newBrowser(t, adminURL).do(http.MethodGet, "/api/v1/overview", nil, tc.header)
			if r.status != tc.status || r.code() != tc.code {
				t.Fatalf("%d %s", r.status, r.body)
			}
			if r.header.Get("WWW-Authenticate") != "" {
				t.Fatal("a challenge would make browsers send Basic credentials by themselves")
			}
		})
	}
	if r := api(t, http.MethodGet, "/api/v1/nope", nil); r.status != 404 || r.code() != "not_found" {
		t.Fatalf("unknown endpoint: %d %s", r.status, r.body)
	}
}

func basic(user, pass string) string {
	r, _ := http.NewRequest(http.MethodGet, "/", nil)
	r.SetBasicAuth(user, pass)
	return r.Header.Get("Authorization")
}

func TestAPIAccounts(t *testing.T) {
	r := api(t, http.MethodPost, "/api/v1/accounts", map[string]string{"uid": "api-acct", "password": "password-1"})
	if r.status != http.StatusCreated || decode[accountChange](t, r).Password != "" {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	if r := api(t, http.MethodPost, "/api/v1/accounts", map[string]string{"uid": "api-acct", "password": "password-1"}); r.status != 409 || r.code() != "conflict" {
		t.Fatalf("duplicate: %d %s", r.status, r.body)
	}
	for _, bad := range []map[string]string{{"uid": "bad uid", "password": "password-1"}, {"uid": "x", "password": "short"}} {
		if r := api(t, http.MethodPost, "/api/v1/accounts", bad); r.status != 400 || r.code() != "invalid_request" {
			t.Fatalf("%v: %d %s", bad, r.status, r.body)
		}
	}
	if r := api(t, http.MethodPost, "/api/v1/accounts", `{"uid":`); r.status != 400 || r.code() != "malformed_json" {
		t.Fatalf("malformed: %d %s", r.status, r.body)
	}
	gen := decode[accountChange](t, api(t, http.MethodPost, "/api/v1/accounts", map[string]string{"uid": "api-gen"}))
	if len(gen.Password) < 16 {
		t.Fatalf("generated password %q", gen.Password)
	}

	if r := api(t, http.MethodPost, "/api/v1/accounts/api-acct/disable", nil); r.status != 200 {
		t.Fatalf("disable: %d %s", r.status, r.body)
	}
	page := decode[accountPage](t, api(t, http.MethodGet, "/api/v1/accounts?q=api-", nil))
	if len(page.Accounts) != 2 || page.Accounts[0].UID != "api-acct" || !page.Accounts[0].Disabled || page.Accounts[1].Disabled {
		t.Fatalf("list: %+v", page)
	}
	if r := api(t, http.MethodPost, "/api/v1/accounts/api-acct/enable", nil); r.status != 200 {
		t.Fatalf("enable: %d %s", r.status, r.body)
	}
	if r := api(t, http.MethodPost, "/api/v1/accounts/nobody-here/disable", nil); r.status != 404 {
		t.Fatalf("disable unknown: %d %s", r.status, r.body)
	}
	set := decode[accountChange](t, api(t, http.MethodPost, "/api/v1/accounts/api-acct/password", nil))
	if set.Password == "" {
		t.Fatal("no generated password")
	}
	if r := api(t, http.MethodPost, "/api/v1/accounts/api-acct/password", map[string]string{"password": "another-password"}); r.status != 200 || decode[accountChange](t, r).Password != "" {
		t.Fatalf("set password: %d %s", r.status, r.body)
	}

	t.Run("paging", func(t *testing.T) {
		for i := range pageSize + 5 {
			if r := api(t, http.MethodPost, "/api/v1/accounts", map[string]string{"uid": fmt.Sprintf("pg-%03d", i), "password": "password-1"}); r.status != 201 {
				t.Fatalf("create: %d %s", r.status, r.body)
			}
		}
		first := decode[accountPage](t, api(t, http.MethodGet, "/api/v1/accounts?q=pg-", nil))
		if len(first.Accounts) != pageSize || first.NextAfter != "pg-049" {
			t.Fatalf("first page: %d accounts, next %q", len(first.Accounts), first.NextAfter)
		}
		second := decode[accountPage](t, api(t, http.MethodGet, "/api/v1/accounts?q=pg-&after="+first.NextAfter, nil))
		if len(second.Accounts) != 5 || second.Accounts[0].UID != "pg-050" || second.NextAfter != "" {
			t.Fatalf("second page: %+v", second)
		}
	})
}

func TestAPIKeys(t *testing.T) {
	r := api(t, http.MethodPost, "/api/v1/keys", map[string]string{"name": "api test key"})
	if r.status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.status, r.body)
	}
	k := decode[newKey](t, r)
	if !strings.HasPrefix(k.Key, "hk_") || k.ID == 0 || !strings.HasPrefix(k.Key, k.Prefix) {
		t.Fatalf("created %+v", k)
	}
	if s := pushRouteStatus(t, k.Key); s != 200 {
		t.Fatalf("push-route with the new key: %d", s)
	}
	list := decode[struct{ Keys []keyInfo }](t, api(t, http.MethodGet, "/api/v1/keys", nil))
	if len(list.Keys) == 0 || list.Keys[0].ID != k.ID || list.Keys[0].RevokedAt != nil || bytes.Contains(api(t, http.MethodGet, "/api/v1/keys", nil).body, []byte(k.Key)) {
		t.Fatalf("list: %+v", list)
	}
	if r := api(t, http.MethodPost, fmt.Sprintf("/api/v1/keys/%d/revoke", k.ID), nil); r.status != 200 {
		t.Fatalf("revoke: %d %s", r.status, r.body)
	}
	if s := pushRouteStatus(t, k.Key); s != 401 {
		t.Fatalf("push-route with the revoked key: %d", s)
	}
	for _, path := range []string{"/api/v1/keys/999999/revoke", "/api/v1/keys/x/revoke"} {
		if r := api(t, http.MethodPost, path, nil); r.status != 404 {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
	}
	if r := api(t, http.MethodPost, "/api/v1/keys", map[string]string{"name": ""}); r.status != 400 {
		t.Fatalf("empty name: %d %s", r.status, r.body)
	}
}

func TestAPIPushUserAndKick(t *testing.T) {
	dev := device(t, nodeA, "api-user", "phone")

	t.Run("validation", func(t *testing.T) {
		for _, tc := range []struct {
			body, code string
		}{
			{`{"uids":["api-user"],"data":{"a":`, "malformed_json"},
			{`{"uids":["api-user"]}`, "invalid_request"},
			{`{"uids":["api-user"],"data":null}`, "invalid_request"},
			{`{"uids":[],"data":1}`, "invalid_request"},
			{`{"uids":["a|b"],"data":1}`, "invalid_request"},
			{`{"uids":["api-user"],"data":1,"ttl_s":-1}`, "invalid_request"}, // push-route's own check, passed on
		} {
			if r := api(t, http.MethodPost, "/api/v1/push", tc.body); r.status != 400 || r.code() != tc.code {
				t.Errorf("%s: %d %s", tc.body, r.status, r.body)
			}
		}
	})

	r := api(t, http.MethodPost, "/api/v1/push", map[string]any{"uids": []string{"api-user", "api-offline"}, "data": map[string]string{"text": "hi"}, "ttl_s": 600})
	if r.status != 200 {
		t.Fatalf("push: %d %s", r.status, r.body)
	}
	resp := decode[wire.PushResponse](t, r)
	if len(resp.Results) != 2 || resp.Results[0] != (wire.PushResult{UID: "api-user", Delivered: 1, Stored: true}) || resp.Results[1] != (wire.PushResult{UID: "api-offline", Stored: true}) {
		t.Fatalf("results %+v", resp.Results)
	}
	if p := nextPush(t, dev); p.ID != resp.ID || string(p.Data) != `{"text":"hi"}` {
		t.Fatalf("device got %+v", p)
	}

	b := decode[wire.PushBroadcastResponse](t, api(t, http.MethodPost, "/api/v1/broadcast", map[string]any{"data": "all of you"}))
	if b.Delivered < 1 {
		t.Fatalf("broadcast %+v", b)
	}
	if p := nextPush(t, dev); p.ID != b.ID {
		t.Fatalf("device got %+v, want the broadcast", p)
	}

	u := decode[userInfo](t, api(t, http.MethodGet, "/api/v1/users/api-user", nil))
	if len(u.Connections) != 1 || u.Connections[0].Node != "ps-a" || u.Connections[0].Device != "phone" || u.Account != nil {
		t.Fatalf("user %+v", u)
	}
	if len(u.Pending) != 1 || u.Pending[0].ID != resp.ID || string(u.Pending[0].Data) != `{"text":"hi"}` {
		t.Fatalf("pending %+v", u.Pending)
	}
	if r := api(t, http.MethodGet, "/api/v1/users/bad|uid", nil); r.status != 400 {
		t.Fatalf("bad uid: %d %s", r.status, r.body)
	}

	kick := decode[struct {
		Closed int
		Nodes  []kickResult
	}](t, api(t, http.MethodPost, "/api/v1/users/api-user/kick", nil))
	if kick.Closed != 1 || len(kick.Nodes) != 2 {
		t.Fatalf("kick %+v", kick)
	}
	if code := closedBy(t, dev); code != wire.ClosePolicy {
		t.Fatalf("closed with %d", code)
	}
	eventually(t, "route gone after the kick", func() error {
		if u := decode[userInfo](t, api(t, http.MethodGet, "/api/v1/users/api-user", nil)); len(u.Connections) != 0 {
			return fmt.Errorf("%+v", u.Connections)
		}
		return nil
	})
}

func TestAPIUpstreamPaging(t *testing.T) {
	now := time.Now()
	insertUpstream(t, "up-a", pageSize+10, now)
	insertUpstream(t, "up-b", 3, now.Add(-time.Hour))

	first := decode[upstreamPage](t, api(t, http.MethodGet, "/api/v1/upstream?uid=up-a", nil))
	if len(first.Messages) != pageSize || first.Messages[0].ID != "up-up-a-000" || first.NextBefore == "" {
		t.Fatalf("first page: %d, first %+v, next %q", len(first.Messages), first.Messages[0], first.NextBefore)
	}
	var data map[string]any
	if err := json.Unmarshal(first.Messages[0].Data, &data); err != nil || data["text"] != "reading 0 from up-a" {
		t.Fatalf("data %s", first.Messages[0].Data)
	}
	second := decode[upstreamPage](t, api(t, http.MethodGet, "/api/v1/upstream?uid=up-a&before="+url.QueryEscape(first.NextBefore), nil))
	if len(second.Messages) != 10 || second.Messages[0].ID != fmt.Sprintf("up-up-a-%03d", pageSize) || second.NextBefore != "" {
		t.Fatalf("second page: %d %+v", len(second.Messages), second)
	}
	all := decode[upstreamPage](t, api(t, http.MethodGet, "/api/v1/upstream", nil))
	if len(all.Messages) != pageSize || all.Messages[0].UID != "up-a" {
		t.Fatalf("unfiltered: %d", len(all.Messages))
	}
	b := decode[upstreamPage](t, api(t, http.MethodGet, "/api/v1/upstream?uid=up-b", nil))
	if len(b.Messages) != 3 {
		t.Fatalf("up-b: %d", len(b.Messages))
	}
	if r := api(t, http.MethodGet, "/api/v1/upstream?before=yesterday", nil); r.status != 400 {
		t.Fatalf("bad cursor: %d %s", r.status, r.body)
	}
}

func TestAPIOverviewAndNodes(t *testing.T) {
	device(t, nodeB, "overview-user", "tablet")
	eventually(t, "overview counts the device", func() error {
		o := decode[overview](t, api(t, http.MethodGet, "/api/v1/overview", nil))
		if o.Totals.Live < 2 || o.Totals.Connections < 1 || o.UpstreamLastMinute == nil {
			return fmt.Errorf("%+v", o.Totals)
		}
		for _, n := range o.Nodes {
			if n.ID == "ps-b" && n.Stats != nil && n.Stats.Connections >= 1 && n.State == "live" {
				return nil
			}
		}
		return fmt.Errorf("ps-b not live with a connection: %+v", o.Nodes)
	})
	eventually(t, "rates sampled", func() error {
		if o := decode[overview](t, api(t, http.MethodGet, "/api/v1/overview", nil)); o.Rates == nil {
			return fmt.Errorf("no rates yet")
		}
		return nil
	})
	nodes := decode[struct{ Nodes []nodeStatus }](t, api(t, http.MethodGet, "/api/v1/nodes", nil))
	if len(nodes.Nodes) < 2 || nodes.Nodes[0].InternalURL == "" {
		t.Fatalf("nodes %+v", nodes)
	}
	if r := api(t, http.MethodPost, "/api/v1/nodes/ps-nope/drain", nil); r.status != 404 {
		t.Fatalf("drain unknown: %d %s", r.status, r.body)
	}
	if r := api(t, http.MethodPost, "/api/v1/nodes/ps-nope/undrain", nil); r.status != 404 {
		t.Fatalf("undrain unknown: %d %s", r.status, r.body)
	}
	if r := api(t, http.MethodPost, "/api/v1/nodes/"+nodes.Nodes[0].ID+"/undrain", nil); r.status != 409 || r.code() != "conflict" {
		t.Fatalf("undrain of a live node: %d %s, want 409 conflict", r.status, r.body)
	}
}

// TestFirstAdminRateLimitAndShutdown runs a second admin: it makes up the first admin's password and
// logs it once, limits logins per address, and shuts down cleanly.
func TestFirstAdminRateLimitAndShutdown(t *testing.T) {
	vars := adminEnv(map[string]string{"HERALD_ADMIN_USER": "generated", "HERALD_LOGIN_RATE_PER_IP": "3", "HERALD_LOG_LEVEL": "info"})
	var out syncBuffer
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return vars[k] }, &out) }()
	if err := testenv.WaitHTTP("http://"+vars["HERALD_INTERNAL_ADDR"]+"/readyz", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	// Logs are flushed every 100 ms, so the line may arrive just after the node is ready.
	var m []string
	eventually(t, "generated password logged", func() error {
		if m = regexp.MustCompile(`"user":"generated","password":"([^"]+)"`).FindStringSubmatch(out.String()); m == nil {
			return fmt.Errorf("not in the log:\n%s", out.String())
		}
		return nil
	})
	call := func(pass string) reply {
		return newBrowser(t, "http://"+vars["HERALD_LISTEN_ADDR"]).do(http.MethodGet, "/api/v1/overview", nil, http.Header{"Authorization": {basic("generated", pass)}})
	}
	if r := call(m[1]); r.status != 200 {
		t.Fatalf("generated password: %d %s", r.status, r.body)
	}
	// A checked password is trusted for a minute, so it costs no attempts; two wrong ones use the rest.
	for range 2 {
		if r := call("wrong"); r.status != 401 {
			t.Fatalf("wrong password: %d", r.status)
		}
	}
	r := call("wrong")
	if r.status != 429 || r.code() != "rate_limited" || r.header.Get("Retry-After") == "" {
		t.Fatalf("4th attempt: %d %s", r.status, r.body)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("run returned %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("admin did not shut down within 15s")
	}
	if n := strings.Count(out.String(), m[1]); n != 1 {
		t.Fatalf("password logged %d times", n)
	}
}

// syncBuffer is a bytes.Buffer safe for the logger's writes and the test's reads.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// TestLogoutEndsTheSessionOnEveryInstance runs a second admin with the same session key: a cookie
// from the first opens it, and logging out on the first closes it there too.
func TestLogoutEndsTheSessionOnEveryInstance(t *testing.T) {
	vars := adminEnv(map[string]string{"HERALD_ADMIN_USER": adminUser, "HERALD_ADMIN_PASSWORD": adminPassword})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, func(k string) string { return vars[k] }, io.Discard) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("second admin: %v", err)
		}
	})
	if err := testenv.WaitHTTP("http://"+vars["HERALD_INTERNAL_ADDR"]+"/readyz", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	first := newBrowser(t, adminURL)
	token := csrfOf(t, first.get("/login"))
	if r := first.postForm("/login", url.Values{"csrf": {token}, "username": {adminUser}, "password": {adminPassword}, "next": {"/"}}); r.status != http.StatusSeeOther {
		t.Fatalf("login: %d %.200s", r.status, r.body)
	}
	firstURL, _ := url.Parse(adminURL)
	secondURL, _ := url.Parse("http://" + vars["HERALD_LISTEN_ADDR"])
	second := newBrowser(t, secondURL.String())
	second.http.Jar.SetCookies(secondURL, first.http.Jar.Cookies(firstURL))
	if r := second.get("/"); r.status != http.StatusOK {
		t.Fatalf("the first instance's session on the second: %d", r.status)
	}
	if r := first.postForm("/logout", url.Values{"csrf": {csrfOf(t, first.get("/"))}}); r.status != http.StatusSeeOther {
		t.Fatalf("logout: %d", r.status)
	}
	if r := second.get("/"); r.status != http.StatusSeeOther {
		t.Fatalf("the logged-out session on the second instance: %d, want a redirect to the login page", r.status)
	}
}

// TestOpenAPIServed: the console serves the APIs' descriptions to anyone, and a JSON 404 for others.
func TestOpenAPIServed(t *testing.T) {
	for file, want := range map[string]int{"push-route.yaml": 200, "auth.yaml": 200, "admin.yaml": 200, "nope.yaml": 404, "..%2Fgo.mod": 404} {
		resp, err := http.Get(adminURL + "/openapi/" + file)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || (want == 200 && !strings.HasPrefix(string(b), "openapi: 3.1.0")) {
			t.Errorf("%s: %d %.60s, want %d", file, resp.StatusCode, b, want)
		}
	}
}
