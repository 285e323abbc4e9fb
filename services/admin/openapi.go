package main

import (
	"io/fs"
	"net/http"

	apidocs "github.com/heraldpush/herald/api"
	"github.com/heraldpush/herald/pkg/httpapi"
)

// handleOpenAPI serves the OpenAPI descriptions (GET /openapi/admin.yaml, auth.yaml, push-route.yaml)
// without a login: they describe the APIs, not their data, for integrators' tools.
func handleOpenAPI() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := fs.ReadFile(apidocs.FS, r.PathValue("file"))
		if err != nil {
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeNotFound, "no description %q: there are admin.yaml, auth.yaml and push-route.yaml", r.PathValue("file")))
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		w.Write(b)
	})
}
