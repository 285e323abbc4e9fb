package httpapi

import (
	"reflect"
	"strings"
)

// unknownField reports the field encoding/json refused under DisallowUnknownFields. The package
// returns that refusal as a plain error, so its text is all there is to go by.
func unknownField(err error) (string, bool) {
	const prefix = `json: unknown field "`
	msg := err.Error()
	if !strings.HasPrefix(msg, prefix) || !strings.HasSuffix(msg, `"`) {
		return "", false
	}
	return msg[len(prefix) : len(msg)-1], true
}

func unknownFieldError(field string, dst any) *Error {
	if guess := closest(field, jsonFields(dst)); guess != "" {
		return Errorf(CodeInvalidRequest, "unknown field %q; did you mean %q?", field, guess)
	}
	return Errorf(CodeInvalidRequest, "unknown field %q", field)
}

// jsonFields lists the JSON names of the struct dst points to (nested objects keep their own names;
// a misspelling inside them is still refused, only without a guess).
func jsonFields(dst any) []string {
	t := reflect.TypeOf(dst)
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return nil
	}
	var names []string
	for f := range t.Fields() {
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		names = append(names, name)
	}
	return names
}

// closest returns the name field most probably meant: one that starts with it or it starts with
// ("ttl" for "ttl_s"), or one at most two edits away; "" when none is close.
func closest(field string, names []string) string {
	f := strings.ToLower(field)
	best, bestDist := "", 3
	for _, n := range names {
		l := strings.ToLower(n)
		if strings.HasPrefix(l, f) || strings.HasPrefix(f, l) {
			return n
		}
		if d := editDistance(f, l); d < bestDist {
			best, bestDist = n, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance of two short strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
