package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
)

// TestVersionFlag: -version prints the binary's name and version and starts nothing.
func TestVersionFlag(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"-version"}, func(string) string { return "" }, &out); err != nil {
		t.Fatal(err)
	}
	if got := out.String(); !strings.HasPrefix(got, "herald-admin devel") {
		t.Fatalf("printed %q, want herald-admin and the version", got)
	}
}
