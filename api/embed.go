// Package api holds the OpenAPI 3.1 descriptions of Herald's public HTTP APIs, embedded so that the
// admin console can serve them (GET /openapi/{file}). tools/stack's TestOpenAPIMatchesTheServices
// validates real calls against them. internal.proto, beside them, describes the binary form of the
// push-servers' internal deliver-batch call; it is not served, and pkg/wire's tests check Herald's
// encoding against it.
package api

import "embed"

// FS holds the descriptions in its root: admin.yaml, auth.yaml, push-route.yaml.
//
//go:embed *.yaml
var FS embed.FS
