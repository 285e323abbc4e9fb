package main

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers/legacy"

	"github.com/heraldpush/herald/pkg/client"
	"github.com/heraldpush/herald/pkg/testenv"
)

// apiCall is one real call of an API and the status its description documents for it. A bad call is
// one the description itself rejects: only its answer is validated.
type apiCall struct {
	method, path, body, key string
	status                  int
	bad                     bool
	basic                   []string // an admin's user and password, instead of a bearer key
}

// TestOpenAPIMatchesTheServices sends real calls to a running stack's auth and push-route, the happy
// paths and the documented errors, and validates each request and answer against api/auth.yaml and
// api/push-route.yaml (kin-openapi, JSON Schema 2020-12): a field renamed, a status or an error body
// that the description does not say fails here. Every operation of the descriptions is called.
func TestOpenAPIMatchesTheServices(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the stack")
	}
	st := startStack(t, testenv.FreePortRange(t, 20)).st
	ctx := context.Background()
	dev, err := client.MintToken(ctx, st.AuthURL, st.APIKey, "oa-user", "d")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := client.Dial(ctx, client.Config{Token: dev.Token, WSURL: dev.WSURL})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	key, long := st.APIKey, strings.Repeat("x", 70000)

	check(t, "../../api/auth.yaml", st.AuthURL, []apiCall{
		{method: "POST", path: "/v1/login", body: `{"uid":"` + st.DemoUID + `","password":"` + st.DemoPassword + `","device":"web"}`, status: 200},
		{method: "POST", path: "/v1/login", body: `{"uid":"` + st.DemoUID + `","password":"wrong","device":"web"}`, status: 401},
		{method: "POST", path: "/v1/login", body: `{"uid":"a|b","password":"x","device":"web"}`, status: 400, bad: true},
		{method: "POST", path: "/v1/login", body: `{"uid":`, status: 400, bad: true},
		{method: "POST", path: "/v1/tokens", key: key, body: `{"uid":"oa-user","device":"d","rooms":["lobby","match:*"]}`, status: 200},
		{method: "POST", path: "/v1/tokens", key: "wrong", body: `{"uid":"oa-user","device":"d"}`, status: 401},
		{method: "POST", path: "/v1/tokens", key: key, body: `{"uid":"oa-user","device":"d","extra":1}`, status: 400, bad: true},
		{method: "GET", path: "/healthz", status: 200},
		{method: "GET", path: "/readyz", status: 200},
	})
	check(t, "../../api/push-route.yaml", st.PushAPIURL, []apiCall{
		{method: "POST", path: "/v1/push", key: key, body: `{"uids":["oa-user","nobody"],"data":{"text":"hi"},"ttl_s":60}`, status: 200},
		{method: "POST", path: "/v1/push", key: key, body: `{"uids":[],"data":1}`, status: 400, bad: true},
		{method: "POST", path: "/v1/push", key: key, body: `{"uids":["u"],"data":"` + long + `"}`, status: 413},
		{method: "POST", path: "/v1/push", key: "wrong", body: `{"uids":["u"],"data":1}`, status: 401},
		{method: "POST", path: "/v1/broadcast", key: key, body: `{"data":"all"}`, status: 200},
		{method: "POST", path: "/v1/broadcast", key: key, body: `{}`, status: 400, bad: true},
		{method: "GET", path: "/v1/users/oa-user/connections", key: key, status: 200},
		{method: "GET", path: "/v1/users/a%7Cb/connections", key: key, status: 400, bad: true},
		{method: "POST", path: "/v1/rooms/oa-room/join", key: key, body: `{"uids":["oa-user"]}`, status: 200},
		{method: "GET", path: "/v1/rooms/oa-room", key: key, status: 200},
		{method: "POST", path: "/v1/rooms/oa-room/push", key: key, body: `{"data":{"text":"room"}}`, status: 200},
		{method: "POST", path: "/v1/rooms/oa-room/push", key: key, body: `{"data":1,"ttl_s":5}`, status: 400, bad: true},
		{method: "POST", path: "/v1/rooms/oa-room/leave", key: key, body: `{"uids":["oa-user"]}`, status: 200},
		{method: "POST", path: "/v1/rooms/oa-room/leave", key: key, body: `{"uids":[]}`, status: 400, bad: true},
		{method: "GET", path: "/v1/rooms/oa-room", key: "", status: 401},
		{method: "GET", path: "/healthz", status: 200},
	})
	admin, wrong := []string{st.AdminUser, st.AdminPassword}, []string{st.AdminUser, "wrong-password"}
	ps := st.PushServers[0].ID
	check(t, "../../api/admin.yaml", st.AdminURL, []apiCall{
		{method: "GET", path: "/api/v1/overview", basic: admin, status: 200},
		{method: "GET", path: "/api/v1/overview", basic: wrong, status: 401},
		{method: "GET", path: "/api/v1/nodes", basic: admin, status: 200},
		{method: "POST", path: "/api/v1/nodes/nope/drain", basic: admin, status: 404},
		{method: "POST", path: "/api/v1/nodes/" + ps + "/undrain", basic: admin, status: 409},
		{method: "POST", path: "/api/v1/push", basic: admin, body: `{"uids":["oa-user"],"data":{"text":"from the console"}}`, status: 200},
		{method: "POST", path: "/api/v1/push", basic: admin, body: `{"uids":[],"data":1}`, status: 400, bad: true},
		{method: "POST", path: "/api/v1/broadcast", basic: admin, body: `{"data":"all"}`, status: 200},
		{method: "POST", path: "/api/v1/rooms/oa-room/push", basic: admin, body: `{"data":"room"}`, status: 200},
		{method: "POST", path: "/api/v1/rooms/oa-room/push", basic: admin, body: `{}`, status: 400, bad: true},
		{method: "GET", path: "/api/v1/rooms", basic: admin, status: 200},
		{method: "GET", path: "/api/v1/users/oa-user", basic: admin, status: 200},
		{method: "GET", path: "/api/v1/users/a%7Cb", basic: admin, status: 400, bad: true},
		{method: "GET", path: "/api/v1/accounts", basic: admin, status: 200},
		{method: "POST", path: "/api/v1/accounts", basic: admin, body: `{"uid":"oa-account"}`, status: 201},
		{method: "POST", path: "/api/v1/accounts", basic: admin, body: `{"uid":"oa-account"}`, status: 409},
		{method: "POST", path: "/api/v1/accounts/oa-account/disable", basic: admin, status: 200},
		{method: "POST", path: "/api/v1/accounts/oa-account/enable", basic: admin, status: 200},
		{method: "POST", path: "/api/v1/accounts/oa-account/password", basic: admin, body: `{"password":"a-long-password"}`, status: 200},
		{method: "POST", path: "/api/v1/accounts/nobody-here/disable", basic: admin, status: 404},
		{method: "GET", path: "/api/v1/keys", basic: admin, status: 200},
		{method: "POST", path: "/api/v1/keys", basic: admin, body: `{"name":"oa"}`, status: 201},
		{method: "POST", path: "/api/v1/keys/999999/revoke", basic: admin, status: 404},
		{method: "GET", path: "/api/v1/upstream", basic: admin, status: 200},
		{method: "POST", path: "/api/v1/users/oa-user/kick", basic: admin, status: 200},
	})
}

// check validates calls against the description at spec, served at base.
func check(t *testing.T, spec, base string, calls []apiCall) {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("%s: %v", spec, err)
	}
	doc.Servers = openapi3.Servers{{URL: base}}
	router, err := legacy.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	opts := &openapi3filter.Options{AuthenticationFunc: openapi3filter.NoopAuthenticationFunc, IncludeResponseStatus: true}
	called := map[*openapi3.Operation]bool{}
	for _, c := range calls {
		name := c.method + " " + c.path
		req, _ := http.NewRequest(c.method, base+c.path, strings.NewReader(c.body))
		if c.body != "" {
			req.Header.Set("Content-Type", "application/json")
		}
		if c.key != "" {
			req.Header.Set("Authorization", "Bearer "+c.key)
		}
		if len(c.basic) == 2 {
			req.SetBasicAuth(c.basic[0], c.basic[1])
		}
		route, params, err := router.FindRoute(req)
		if err != nil {
			t.Errorf("%s %s: not in %s: %v", name, c.body, spec, err)
			continue
		}
		called[route.Operation] = true
		in := &openapi3filter.RequestValidationInput{Request: req, PathParams: params, Route: route, Options: opts}
		err = openapi3filter.ValidateRequest(context.Background(), in)
		switch {
		case c.bad && err == nil:
			t.Errorf("%s %.80s: the description accepts a request the service refuses", name, c.body)
		case !c.bad && err != nil:
			t.Errorf("%s %.80s: request does not match the description: %v", name, c.body, err)
		}
		req.Body = io.NopCloser(strings.NewReader(c.body)) // ValidateRequest read it
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.status {
			t.Errorf("%s %.80s: %d %s, want %d", name, c.body, resp.StatusCode, body, c.status)
			continue
		}
		out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header, Options: opts}
		out.SetBodyBytes(body)
		if err := openapi3filter.ValidateResponse(context.Background(), out); err != nil {
			t.Errorf("%s %.80s: answer %d %s does not match the description: %v", name, c.body, resp.StatusCode, bytes.TrimSpace(body), err)
		}
	}
	for path, item := range doc.Paths.Map() {
		for method, op := range item.Operations() {
			if !called[op] {
				t.Errorf("%s: %s %s is never called by this test", spec, method, path)
			}
		}
	}
}
