// Package ident checks the identifiers Herald's contracts allow: uids and device names are 1–128
// characters of letters, digits and "._:@-". The alphabet keeps "|" out, because route values in Redis
// join fields with it.
package ident

import "fmt"

// MaxLen is the longest allowed identifier.
const MaxLen = 128

// Check returns nil when s is a valid uid or device name, and otherwise an error naming what (a "uid",
// a "device") was wrong and why.
func Check(what, s string) error {
	if s == "" {
		return fmt.Errorf("%s is required", what)
	}
	if len(s) > MaxLen {
		return fmt.Errorf("%s is longer than %d characters", what, MaxLen)
	}
	for i := 0; i < len(s); i++ {
		if !allowed(s[i]) {
			return fmt.Errorf("%s may hold only letters, digits and ._:@- (found %q)", what, s[i])
		}
	}
	return nil
}

func allowed(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	case c == '.', c == '_', c == ':', c == '@', c == '-':
		return true
	}
	return false
}
