package main

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/ident"
	"github.com/heraldpush/herald/pkg/wire"
)

// FuzzPushRequest feeds arbitrary bodies to the push API's decoding and validation: a body is either
// refused with a 4xx API error or yields a push that keeps every limit.
func FuzzPushRequest(f *testing.F) {
	for _, s := range []string{
		`{"uids":["alice"],"data":{"text":"hi"},"ttl_s":60}`,
		`{"uids":["a","a","b"],"data":1,"id":"order-1"}`,
		`{"uids":[],"data":1}`,
		`{"uids":["a|b"],"data":1}`,
		`{"uids":["a"],"data":null}`,
		`{"uids":["a"],"data":1,"ttl_s":-1}`,
		`{"uids":["a"],"data":"` + strings.Repeat("x", 300) + `"}`,
		`{"uids":"a"}`,
		`{} {}`,
		``,
	} {
		f.Add([]byte(s))
	}
	l := limits{maxBody: 4096, maxData: 256, maxUIDs: 5, maxTTL: time.Hour}
	f.Fuzz(func(t *testing.T, body []byte) {
		w := httptest.NewRecorder()
		r := httptest.NewRequest("POST", wire.PathPush, strings.NewReader(string(body)))
		var req wire.PushRequest
		err := httpapi.DecodeJSON(w, r, l.maxBody, &req)
		var uids []string
		if err == nil {
			uids, err = l.validate(&req)
		}
		if err != nil {
			var apiErr *httpapi.Error
			if !errors.As(err, &apiErr) || apiErr.Status() < 400 || apiErr.Status() >= 500 {
				t.Fatalf("refusal %v is not a 4xx API error", err)
			}
			return
		}
		if len(uids) == 0 || len(uids) > l.maxUIDs || len(req.Data) == 0 || len(req.Data) > l.maxData || req.TTLS < 0 {
			t.Fatalf("accepted %+v (uids %v) past the limits", req, uids)
		}
		seen := map[string]bool{}
		for _, uid := range uids {
			if ident.Check("uid", uid) != nil || seen[uid] {
				t.Fatalf("accepted uid %q (repeat %v)", uid, seen[uid])
			}
			seen[uid] = true
		}
	})
}
