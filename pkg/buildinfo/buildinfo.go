// Package buildinfo says which version of Herald a binary is: the release it was stamped with at
// link time (make release, make build), or else the commit the Go toolchain recorded.
package buildinfo

import (
	"runtime/debug"
	"sync"
)

// stamped is set by the linker: -ldflags "-X github.com/heraldpush/herald/pkg/buildinfo.stamped=v1.2.3".
// It is written once, at link time, and only read after.
var stamped string

var fromBuild = sync.OnceValue(func() string {
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "devel"
	}
	var rev, dirty string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				dirty = "-dirty"
			}
		}
	}
	if len(rev) > 12 {
		rev = rev[:12]
	}
	if rev == "" {
		return "devel"
	}
	return "devel-" + rev + dirty
})

// Version is the binary's version: the stamped release, or "devel-<commit>[-dirty]", or "devel".
func Version() string {
	if stamped != "" {
		return stamped
	}
	return fromBuild()
}
