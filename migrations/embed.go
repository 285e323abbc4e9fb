// Package migrations holds Herald's MySQL schema as goose SQL files, embedded so that every service
// that owns tables can apply them on start without files on disk.
package migrations

import "embed"

// FS holds the numbered goose migrations (NNNNN_name.sql) in its root.
//
//go:embed *.sql
var FS embed.FS
