package httpapi

import (
	"crypto/subtle"
	"net"
	"net/http"
	"strings"
)

// BearerToken returns the token of an "Authorization: Bearer <token>" header.
func BearerToken(r *http.Request) (string, bool) {
	scheme, value, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	value = strings.TrimSpace(value)
	if !ok || !strings.EqualFold(scheme, "Bearer") || value == "" {
		return "", false
	}
	return value, true
}

// ClientIP is the address a request came from, for rate limits: the first entry of header when the
// service sits behind a proxy that sets it (e.g. X-Forwarded-For), else the peer address.
func ClientIP(r *http.Request, header string) string {
	if header != "" {
		if v := r.Header.Get(header); v != "" {
			first, _, _ := strings.Cut(v, ",")
			return strings.TrimSpace(first)
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// RequireSecret lets a request through only when its header carries secret: the guard of Herald's
// internal APIs. The comparison takes the same time whatever the header holds.
func RequireSecret(header, secret string, h http.Handler) http.Handler {
	want := []byte(secret)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if subtle.ConstantTimeCompare([]byte(r.Header.Get(header)), want) != 1 {
			WriteError(w, Errorf(CodeUnauthorized, "missing or wrong %s", header))
			return
		}
		h.ServeHTTP(w, r)
	})
}
