package main

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/ident"
)

// FuzzTokenRequest feeds arbitrary bodies to the decoding and checks of POST /v1/tokens: refused with
// a 4xx API error, or an identity that keeps the uid and device rules.
func FuzzTokenRequest(f *testing.F) {
	for _, s := range []string{
		`{"uid":"alice","device":"phone"}`,
		`{"uid":"alice","device":"phone","failed_node":"ps-1"}`,
		`{"uid":"","device":"phone"}`,
		`{"uid":"a|b","device":"d"}`,
		`{"uid":"a","device":"d","failed_node":"x|y"}`,
		`{"uid":1}`,
		`nope`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", "/v1/tokens", strings.NewReader(string(body)))
		var req tokenRequest
		err := httpapi.DecodeJSON(w, r, 4096, &req)
		if err == nil {
			err = checkIdentity(req.UID, req.Device)
		}
		if err == nil {
			err = checkFailedNode(req.FailedNode)
		}
		if err != nil {
			var apiErr *httpapi.Error
			if !errors.As(err, &apiErr) || apiErr.Status() < 400 || apiErr.Status() >= 500 {
				t.Fatalf("refusal %v is not a 4xx API error", err)
			}
			return
		}
		if ident.Check("uid", req.UID) != nil || ident.Check("device", req.Device) != nil {
			t.Fatalf("accepted %+v", req)
		}
	})
}
