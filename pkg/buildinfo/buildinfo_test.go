package buildinfo

import (
	"strings"
	"testing"
)

func TestVersion(t *testing.T) {
	if v := Version(); !strings.HasPrefix(v, "devel") {
		t.Fatalf("unstamped test binary: version %q, want devel…", v)
	}
	stamped = "v1.2.3"
	t.Cleanup(func() { stamped = "" })
	if v := Version(); v != "v1.2.3" {
		t.Fatalf("stamped: %q", v)
	}
}
