package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
)

// TestRefusesUnknownFields: both endpoints refuse a field they do not know, naming it and the field
// probably meant; a wrong method is a 405 with Allow.
func TestRefusesUnknownFields(t *testing.T) {
	a := startAuth(t, servers{}, nil)
	key, _, err := a.keys.Create(context.Background(), "strict")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		path, authz string
		body        map[string]string
		hint        string
	}{
		{"/v1/login", "", map[string]string{"uid": "u", "password": "pw", "device": "d", "devcie": "x"}, `did you mean \"device\"`},
		{"/v1/tokens", "Bearer " + key, map[string]string{"uid": "u", "device": "d", "failed": "ps-1"}, `did you mean \"failed_node\"`},
	} {
		r := post(t, a.url+c.path, c.authz, c.body)
		if r.status != http.StatusBadRequest || r.errorCode() != "invalid_request" || !strings.Contains(string(r.body), c.hint) {
			t.Errorf("%s: %d %s, want 400 invalid_request with %s", c.path, r.status, r.body, c.hint)
		}
	}
	for _, path := range []string{"/v1/login", "/v1/tokens"} {
		r := get(t, a.url+path)
		if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST" {
			t.Errorf("GET %s: %d Allow %q %s, want 405 Allow POST", path, r.status, r.header.Get("Allow"), r.body)
		}
	}
}
