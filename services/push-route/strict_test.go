package main

import (
	"net/http"
	"strings"
	"testing"
)

// TestPushAPIRefusesUnknownFields: a misspelt optional field is a 400 naming it and the field
// probably meant, not a push whose ttl was silently dropped; a wrong method is a 405 with Allow.
func TestPushAPIRefusesUnknownFields(t *testing.T) {
	for path, c := range map[string]struct {
		body any
		hint string
	}{
		"/v1/push":      {map[string]any{"uids": []string{uniq("strict")}, "data": 1, "ttl": 60}, `did you mean \"ttl_s\"`},
		"/v1/broadcast": {map[string]any{"data": 1, "ttl_s": 60}, `unknown field \"ttl_s\"`},
	} {
		r := call(t, http.MethodPost, path, apiKey, c.body, nil)
		if r.status != http.StatusBadRequest || r.code() != "invalid_request" || !strings.Contains(string(r.body), c.hint) {
			t.Errorf("%s: %d %s, want 400 invalid_request with %s", path, r.status, r.body, c.hint)
		}
	}
	for path, allow := range map[string]string{"/v1/push": "POST", "/v1/broadcast": "POST", "/v1/users/x/connections": "GET, HEAD"} {
		method := http.MethodGet
		if allow != "POST" {
			method = http.MethodDelete
		}
		r := call(t, method, path, apiKey, nil, nil)
		if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != allow || r.code() != "method_not_allowed" {
			t.Errorf("%s %s: %d Allow %q %s, want 405 Allow %s", method, path, r.status, r.header.Get("Allow"), r.body, allow)
		}
	}
}
