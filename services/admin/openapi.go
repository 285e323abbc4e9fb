package main

import (
	"io/fs"
	"net/http"

	apidocs "github.com/heraldpush/herald/api"
	"github.com/heraldpush/herald/pkg/httpapi"
)

// handleOpenAPI serves the OpenAPI descriptions of auth's and the push API (GET /openapi/auth.yaml,
// /openapi/push-route.yaml), without a login: they describe public APIs, for integrators' tools.
func handleOpenAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := fs.ReadFile(apidocs.FS, r.PathValue("file"))
		if err != nil {
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeNotFound, "no description %q: there are auth.yaml and push-route.yaml", r.PathValue("file")))
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		w.Write(b)
	})
}
