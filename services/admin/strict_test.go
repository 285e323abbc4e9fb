package main

import (
	"net/http"
	"strings"
	"testing"
)

// TestAPIRefusesUnknownFields: every JSON endpoint of the console refuses a field it does not know,
// naming it (and the field probably meant), rather than dropping it; a wrong method is a 405.
func TestAPIRefusesUnknownFields(t *testing.T) {
	for path, body := range map[string]map[string]any{
		"/api/v1/push":                       {"uids": []string{"u"}, "data": 1, "ttl": 60},
		"/api/v1/broadcast":                  {"data": 1, "ttl_s": 60},
		"/api/v1/accounts":                   {"uid": "strict-1", "password": "password-1", "pasword": "x"},
		"/api/v1/accounts/strict-1/password": {"password": "password-2", "old_password": "x"},
		"/api/v1/keys":                       {"name": "strict", "nmae": "x"},
	} {
		r := api(t, http.MethodPost, path, body)
		if r.status != http.StatusBadRequest || r.code() != "invalid_request" || !strings.Contains(string(r.body), "unknown field") {
			t.Errorf("%s: %d %s, want 400 invalid_request naming the unknown field", path, r.status, r.body)
		}
	}
	r := api(t, http.MethodPost, "/api/v1/push", map[string]any{"uids": []string{"u"}, "data": 1, "ttl": 60})
	if !strings.Contains(string(r.body), `did you mean \"ttl_s\"`) {
		t.Errorf("push with ttl: %s, want a hint at ttl_s", r.body)
	}
	r = api(t, http.MethodGet, "/api/v1/keys/1/revoke", nil)
	if r.status != http.StatusMethodNotAllowed || r.header.Get("Allow") != "POST" || r.code() != "method_not_allowed" {
		t.Errorf("GET on a POST endpoint: %d Allow %q %s", r.status, r.header.Get("Allow"), r.body)
	}
}
