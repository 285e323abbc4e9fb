package ident

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"alice", true},
		{"user.1_a:b@c-d", true},
		{strings.Repeat("a", MaxLen), true},
		{"", false},
		{strings.Repeat("a", MaxLen+1), false},
		{"a|b", false},
		{"a b", false},
		{"é", false},
		{"a/b", false},
	}
	for _, tt := range tests {
		if err := Check("uid", tt.in); (err == nil) != tt.ok {
			t.Errorf("Check(%q) = %v, want ok %v", tt.in, err, tt.ok)
		}
	}
}
