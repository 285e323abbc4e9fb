// Package lua holds every Redis script Herald runs, embedded so that the binaries carry them and load
// them into Redis themselves (EVALSHA, falling back to EVAL when the server has not cached them yet).
//
// Each script touches exactly one hash slot: every key arrives in KEYS, never built inside the
// script, so the scripts run unchanged on Redis Cluster.
package lua

import "embed"

// FS holds the scripts in its root, one per file, named by what they do (register.lua, sweep.lua, …).
//
//go:embed *.lua
var FS embed.FS
