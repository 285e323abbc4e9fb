// Package ident checks the identifiers Herald's contracts allow: uids, device names and room names are
// 1–128 characters of letters, digits and "._:@-". The alphabet keeps "|" out, because route values in Redis
// join fields with it.
package ident

import (
	"fmt"
	"strings"
)

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

// CheckRoomPattern checks one entry of a token's rooms claim: a room name, or a prefix of room names
// ending in "*" ("match:*"; "*" alone allows every room).
func CheckRoomPattern(p string) error {
	if prefix, ok := strings.CutSuffix(p, "*"); ok {
		if prefix == "" {
			return nil
		}
		return Check("room prefix", prefix)
	}
	return Check("room", p)
}

// RoomAllowed reports whether patterns (a rooms claim) let their holder join room.
func RoomAllowed(patterns []string, room string) bool {
	for _, p := range patterns {
		if prefix, ok := strings.CutSuffix(p, "*"); ok && strings.HasPrefix(room, prefix) || p == room {
			return true
		}
	}
	return false
}
