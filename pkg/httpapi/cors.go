package httpapi

import (
	"net/http"
	"slices"
	"time"

	"github.com/rs/cors"
)

// CORS lets browsers on the given origins ("*": any) call h with the given methods (preflight included) and
// refuses a request from any other origin with 403 forbidden, as JSON, instead of leaving the browser
// to drop an answer it may not read. A request without an Origin header (not from a browser) passes
// as before. With no origins, h is returned unchanged: no browser on another origin may read its
// answers, and nothing is refused.
func CORS(origins, methods []string, h http.Handler) http.Handler {
	if len(origins) == 0 {
		return h
	}
	c := cors.New(cors.Options{
		AllowedOrigins: origins,
		AllowedMethods: methods,
		AllowedHeaders: []string{"Content-Type"},
		MaxAge:         int((10 * time.Minute).Seconds()),
	})
	withCORS := c.Handler(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if origin := r.Header.Get("Origin"); origin != "" && !slices.Contains(origins, "*") && !slices.Contains(origins, origin) {
			w.Header().Add("Vary", "Origin")
			WriteError(w, Errorf(CodeForbidden, "origin %q may not call this API (allowed: -allowed-origins)", origin))
			return
		}
		withCORS.ServeHTTP(w, r)
	})
}
