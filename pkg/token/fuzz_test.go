package token

import (
	"errors"
	"strings"
	"testing"
	"time"
)

// FuzzVerify hands the verifier arbitrary strings and tampered real tokens: it must never panic, and
// must accept nothing but the untouched token.
func FuzzVerify(f *testing.F) {
	pub, priv, err := GenerateKey()
	if err != nil {
		f.Fatal(err)
	}
	signer := NewSigner(priv, time.Hour)
	good, _, err := signer.Sign("alice", "phone")
	if err != nil {
		f.Fatal(err)
	}
	v := NewVerifier(pub)
	f.Add(good)
	f.Add("")
	f.Add("a.b.c")
	f.Add(strings.Replace(good, ".", "..", 1))
	f.Add(good[:len(good)-2] + "AA")
	f.Add(`eyJhbGciOiJub25lIn0.eyJzdWIiOiJhIn0.`)
	f.Fuzz(func(t *testing.T, tok string) {
		claims, err := v.Verify(tok)
		if err == nil {
			if tok != good {
				t.Fatalf("accepted a token that is not the one signed: %q → %+v", tok, claims)
			}
			return
		}
		if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrExpired) {
			t.Fatalf("error %v is neither ErrInvalid nor ErrExpired", err)
		}
	})
}
