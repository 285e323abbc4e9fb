package httpapi

import (
	"net/http"
	"slices"
	"strings"
)

// Unrouted answers what no other pattern of mux took: 405 method_not_allowed with an Allow header
// when the path is served for other methods, 404 not_found otherwise, both as JSON errors. Register
// it as mux's catch-all; catchAll names every pattern that is such a fallback (the one it is
// registered under included), so they do not count as serving the path.
func Unrouted(mux *http.ServeMux, catchAll ...string) http.Handler {
	methods := []string{http.MethodGet, http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var allow []string
		for _, m := range methods {
			if m == r.Method {
				continue
			}
			probe := r.Clone(r.Context())
			probe.Method = m
			if _, pattern := mux.Handler(probe); pattern != "" && !slices.Contains(catchAll, pattern) {
				allow = append(allow, m)
			}
		}
		if len(allow) == 0 {
			WriteError(w, Errorf(CodeNotFound, "no such endpoint: %s %s", r.Method, r.URL.Path))
			return
		}
		if slices.Contains(allow, http.MethodGet) {
			allow = append(allow, http.MethodHead)
		}
		w.Header().Set("Allow", strings.Join(allow, ", "))
		WriteError(w, Errorf(CodeMethodNotAllow, "%s is not allowed on %s; use %s", r.Method, r.URL.Path, strings.Join(allow, " or ")))
	})
}
