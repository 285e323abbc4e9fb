package token

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// t0 is a fixed signing time; tests move the verifier's clock relative to it.
var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func at(t time.Time) func() time.Time { return func() time.Time { return t } }

func newKey(tb testing.TB) (ed25519.PublicKey, ed25519.PrivateKey) {
	tb.Helper()
	pub, priv, err := GenerateKey()
	if err != nil {
		tb.Fatal(err)
	}
	return pub, priv
}

func sign(tb testing.TB, s *Signer, uid, device string) string {
	tb.Helper()
	tok, _, err := s.Sign(uid, device)
	if err != nil {
		tb.Fatalf("Sign(%q, %q): %v", uid, device, err)
	}
	return tok
}

// forge signs arbitrary claims and kid with any method, to build the tokens a
// well-behaved Signer never would.
func forge(tb testing.TB, method jwt.SigningMethod, key any, kid string, claims jwt.MapClaims) string {
	tb.Helper()
	t := jwt.NewWithClaims(method, claims)
	if kid != "" {
		t.Header["kid"] = kid
	}
	s, err := t.SignedString(key)
	if err != nil {
		tb.Fatalf("forge token: %v", err)
	}
	return s
}

// goodClaims are valid claims at t0; cases delete or change one of them.
func goodClaims() jwt.MapClaims {
	return jwt.MapClaims{
		"sub": "alice", "dev": "phone", "aud": Audience, "jti": "j1",
		"iat": t0.Unix(), "exp": t0.Add(time.Hour).Unix(),
	}
}

func with(c jwt.MapClaims, key string, value any) jwt.MapClaims {
	if value == nil {
		delete(c, key)
	} else {
		c[key] = value
	}
	return c
}

// segment decodes one base64url part of a token into a map.
func segment(tb testing.TB, token string, i int) map[string]any {
	tb.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[i])
	if err != nil {
		tb.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		tb.Fatal(err)
	}
	return m
}

func TestRoundTrip(t *testing.T) {
	pub, priv := newKey(t)
	s := NewSigner(priv, time.Hour)
	s.Now = at(t0.Add(700 * time.Millisecond))
	tok, exp, err := s.Sign("alice", "phone")
	if err != nil {
		t.Fatal(err)
	}
	if want := t0.Add(time.Hour); !exp.Equal(want) {
		t.Errorf("expiresAt = %v, want %v", exp, want)
	}

	v := NewVerifier(pub)
	v.Now = at(t0.Add(time.Minute))
	c, err := v.Verify(tok)
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	if c.UID != "alice" || c.Device != "phone" || c.ID == "" ||
		!c.IssuedAt.Equal(t0) || !c.ExpiresAt.Equal(exp) {
		t.Errorf("claims = %+v; want alice/phone, a jti, iat %v, exp %v", c, t0, exp)
	}

	// The wire form is a public contract (DESIGN.md), so check it literally.
	header, body := segment(t, tok, 0), segment(t, tok, 1)
	if header["alg"] != "EdDSA" || header["kid"] != KeyID(pub) || header["kid"] != s.KeyID() {
		t.Errorf("header = %v; want alg EdDSA and kid %s", header, KeyID(pub))
	}
	for k, want := range map[string]any{
		"sub": "alice", "dev": "phone", "aud": "herald",
		"iat": float64(t0.Unix()), "exp": float64(exp.Unix()), "jti": c.ID,
	} {
		if body[k] != want {
			t.Errorf("claim %s = %#v, want %#v", k, body[k], want)
		}
	}

	c2, err := v.Verify(sign(t, s, "alice", "phone"))
	if err != nil {
		t.Fatal(err)
	}
	if c2.ID == c.ID {
		t.Errorf("two tokens share jti %q", c.ID)
	}
}

func TestDefaultTTL(t *testing.T) {
	_, priv := newKey(t)
	for _, ttl := range []time.Duration{0, -time.Second} {
		s := NewSigner(priv, ttl)
		s.Now = at(t0)
		_, exp, err := s.Sign("alice", "phone")
		if err != nil {
			t.Fatal(err)
		}
		if got := exp.Sub(t0); got != DefaultTTL {
			t.Errorf("ttl %v: token lives %v, want DefaultTTL %v", ttl, got, DefaultTTL)
		}
	}
}

func TestSignRejects(t *testing.T) {
	_, priv := newKey(t)
	tests := []struct {
		name        string
		priv        ed25519.PrivateKey
		uid, device string
	}{
		{"nil key", nil, "alice", "phone"},
		{"short key", priv[:10], "alice", "phone"},
		{"empty uid", priv, "", "phone"},
		{"empty device", priv, "alice", ""},
		{"uid with a pipe", priv, "al|ice", "phone"},
		{"device too long", priv, "alice", strings.Repeat("p", 129)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tok, _, err := NewSigner(tt.priv, 0).Sign(tt.uid, tt.device); err == nil {
				t.Errorf("Sign succeeded with %q", tok)
			}
		})
	}
}

func TestVerify(t *testing.T) {
	pub, priv := newKey(t)
	otherPub, otherPriv := newKey(t)
	kid := KeyID(pub)
	signer := NewSigner(priv, time.Hour)
	signer.Now = at(t0)
	good := sign(t, signer, "alice", "phone")

	parts := strings.Split(good, ".")
	tamperedBody := base64.RawURLEncoding.EncodeToString(
		[]byte(`{"sub":"mallory","dev":"phone","aud":"herald","iat":1893553445,"exp":1893557045}`))
	sig := []byte(parts[2])
	sig[5] ^= 1

	tests := []struct {
		name  string
		token string
		now   time.Time // verifier clock; zero means t0 + 1 min
		want  error     // nil, ErrExpired or ErrInvalid
	}{
		{name: "valid", token: good},
		{name: "within leeway", token: good, now: t0.Add(time.Hour + Leeway - time.Second)},
		{name: "expired", token: good, now: t0.Add(time.Hour + Leeway + time.Second), want: ErrExpired},
		{name: "aud as array", token: forge(t, jwt.SigningMethodEdDSA, priv, kid, with(goodClaims(), "aud", []string{"other", Audience}))},
		{name: "iat in future is ignored", token: forge(t, jwt.SigningMethodEdDSA, priv, kid, with(goodClaims(), "iat", t0.Add(10*time.Minute).Unix()))},

		{name: "unknown kid", token: forge(t, jwt.SigningMethodEdDSA, otherPriv, KeyID(otherPub), goodClaims()), want: ErrInvalid},
		{name: "no kid", token: forge(t, jwt.SigningMethodEdDSA, priv, "", goodClaims()), want: ErrInvalid},
		{name: "wrong key for kid", token: forge(t, jwt.SigningMethodEdDSA, otherPriv, kid, goodClaims()), want: ErrInvalid},
		{name: "tampered payload", token: parts[0] + "." + tamperedBody + "." + parts[2], want: ErrInvalid},
		{name: "tampered signature", token: parts[0] + "." + parts[1] + "." + string(sig), want: ErrInvalid},
		{name: "alg none", token: forge(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, kid, goodClaims()), want: ErrInvalid},
		{name: "HS256 keyed with the public key", token: forge(t, jwt.SigningMethodHS256, []byte(pub), kid, goodClaims()), want: ErrInvalid},
		{name: "wrong aud", token: forge(t, jwt.SigningMethodEdDSA, priv, kid, with(goodClaims(), "aud", "other")), want: ErrInvalid},
		{name: "no aud", token: forge(t, jwt.SigningMethodEdDSA, priv, kid, with(goodClaims(), "aud", nil)), want: ErrInvalid},
		{name: "no sub", token: forge(t, jwt.SigningMethodEdDSA, priv, kid, with(goodClaims(), "sub", nil)), want: ErrInvalid},
		{name: "empty sub", token: forge(t, jwt.SigningMethodEdDSA, priv, kid, with(goodClaims(), "sub", "")), want: ErrInvalid},
		{name: "sub with a pipe", token: forge(t, jwt.SigningMethodEdDSA, priv, kid, with(goodClaims(), "sub", "al|ice")), want: ErrInvalid},
		{name: "dev too long", token: forge(t, jwt.SigningMethodEdDSA, priv, kid, with(goodClaims(), "dev", strings.Repeat("p", 129))), want: ErrInvalid},
		{name: "no dev", token: forge(t, jwt.SigningMethodEdDSA, priv, kid, with(goodClaims(), "dev", nil)), want: ErrInvalid},
		{name: "no exp", token: forge(t, jwt.SigningMethodEdDSA, priv, kid, with(goodClaims(), "exp", nil)), want: ErrInvalid},
		{name: "exp not a number", token: forge(t, jwt.SigningMethodEdDSA, priv, kid, with(goodClaims(), "exp", "soon")), want: ErrInvalid},
		// Expired but also wrong in another way: the client must not be told
		// that logging in again would help with this token's issuer.
		{name: "expired and wrong aud", token: forge(t, jwt.SigningMethodEdDSA, priv, kid, with(goodClaims(), "aud", "other")), now: t0.Add(2 * time.Hour), want: ErrInvalid},
		{name: "expired and unknown kid", token: forge(t, jwt.SigningMethodEdDSA, otherPriv, KeyID(otherPub), goodClaims()), now: t0.Add(2 * time.Hour), want: ErrInvalid},
		{name: "expired and no dev", token: forge(t, jwt.SigningMethodEdDSA, priv, kid, with(goodClaims(), "dev", nil)), now: t0.Add(2 * time.Hour), want: ErrInvalid},
		{name: "empty string", token: "", want: ErrInvalid},
		{name: "not a JWT", token: "hello", want: ErrInvalid},
		{name: "three garbage parts", token: "a.b.c", want: ErrInvalid},
	}
	v := NewVerifier(pub)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = t0.Add(time.Minute)
			}
			v.Now = at(now) // subtests run one after another, so this is race-free
			c, err := v.Verify(tt.token)
			switch {
			case tt.want == nil && err != nil:
				t.Fatalf("Verify: %v", err)
			case tt.want == nil:
				if c.UID != "alice" || c.Device != "phone" {
					t.Errorf("claims = %+v, want alice/phone", c)
				}
			case !errors.Is(err, tt.want):
				t.Fatalf("Verify error = %v, want %v", err, tt.want)
			case tt.want == ErrInvalid && errors.Is(err, ErrExpired), tt.want == ErrExpired && errors.Is(err, ErrInvalid):
				t.Fatalf("Verify error %v matches both ErrExpired and ErrInvalid", err)
			case !reflect.DeepEqual(c, Claims{}):
				t.Errorf("rejected token still returned claims %+v", c)
			}
		})
	}
}

func TestRotation(t *testing.T) {
	oldPub, oldPriv := newKey(t)
	newPub, newPriv := newKey(t)
	fromOld := sign(t, NewSigner(oldPriv, 0), "alice", "phone")
	fromNew := sign(t, NewSigner(newPriv, 0), "bob", "laptop")

	both := NewVerifier(oldPub, newPub)
	for _, tok := range []string{fromOld, fromNew} {
		if _, err := both.Verify(tok); err != nil {
			t.Errorf("verifier with both keys: %v", err)
		}
	}
	// Once the old key is dropped, its tokens must stop working.
	if _, err := NewVerifier(newPub).Verify(fromOld); !errors.Is(err, ErrInvalid) {
		t.Errorf("verifier without the old key: error = %v, want ErrInvalid", err)
	}
}

func TestVerifierWithoutKeys(t *testing.T) {
	_, priv := newKey(t)
	if _, err := NewVerifier().Verify(sign(t, NewSigner(priv, 0), "alice", "phone")); !errors.Is(err, ErrInvalid) {
		t.Errorf("error = %v, want ErrInvalid", err)
	}
}

func TestKeyID(t *testing.T) {
	a, _ := newKey(t)
	b, _ := newKey(t)
	if KeyID(a) != KeyID(append(ed25519.PublicKey(nil), a...)) {
		t.Error("KeyID differs for equal keys")
	}
	if KeyID(a) == KeyID(b) {
		t.Error("KeyID equal for different keys")
	}
	if got := len(KeyID(a)); got != 16 {
		t.Errorf("KeyID has %d characters, want 16", got)
	}
}

func BenchmarkVerify(b *testing.B) {
	pub, priv := newKey(b)
	tok := sign(b, NewSigner(priv, 0), "alice", "phone")
	v := NewVerifier(pub)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(tok); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSign(b *testing.B) {
	_, priv := newKey(b)
	s := NewSigner(priv, 0)
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := s.Sign("alice", "phone"); err != nil {
			b.Fatal(err)
		}
	}
}

// TestReason: each way a token fails is named, so a refused client and the operator can tell them
// apart; the words carry nothing of the keys.
func TestReason(t *testing.T) {
	pub, priv := newKey(t)
	_, otherPriv := newKey(t)
	v := NewVerifier(pub)
	v.Now = at(t0)
	kid := KeyID(pub)
	good := forge(t, jwt.SigningMethodEdDSA, priv, kid, goodClaims())
	parts := strings.Split(good, ".")
	for name, c := range map[string]struct {
		token, want string
	}{
		"good":           {good, ""},
		"expired":        {forge(t, jwt.SigningMethodEdDSA, priv, kid, with(goodClaims(), "exp", t0.Add(-time.Hour).Unix())), "expired"},
		"unknown key":    {forge(t, jwt.SigningMethodEdDSA, otherPriv, "nope", goodClaims()), "unknown_key"},
		"bad signature":  {forge(t, jwt.SigningMethodEdDSA, otherPriv, kid, goodClaims()), "bad_signature"},
		"wrong audience": {forge(t, jwt.SigningMethodEdDSA, priv, kid, with(goodClaims(), "aud", "someone-else")), "wrong_audience"},
		"not yet valid":  {forge(t, jwt.SigningMethodEdDSA, priv, kid, with(goodClaims(), "nbf", t0.Add(time.Hour).Unix())), "not_yet_valid"},
		"malformed":      {"garbage", "malformed"},
		"cut":            {parts[0] + "." + parts[1], "malformed"},
		"bad claims":     {forge(t, jwt.SigningMethodEdDSA, priv, kid, with(goodClaims(), "sub", "a|b")), "bad_claims"},
	} {
		_, err := v.Verify(c.token)
		if got := Reason(err); got != c.want {
			t.Errorf("%s: Reason %q (err %v), want %q", name, got, err, c.want)
		}
	}
}

func TestRoomsClaim(t *testing.T) {
	pub, priv, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	s, v := NewSigner(priv, time.Hour), NewVerifier(pub)
	tok, _, err := s.Sign("ann", "web", "lobby", "match:*")
	if err != nil {
		t.Fatal(err)
	}
	c, err := v.Verify(tok)
	if err != nil || !reflect.DeepEqual(c.Rooms, []string{"lobby", "match:*"}) {
		t.Fatalf("rooms %v, %v", c.Rooms, err)
	}
	plain, _, _ := s.Sign("ann", "web")
	if c, err := v.Verify(plain); err != nil || c.Rooms != nil {
		t.Fatalf("no rooms claim: %v, %v", c.Rooms, err)
	}
	if _, _, err := s.Sign("ann", "web", "bad|room"); err == nil {
		t.Fatal("a room name with | was signed")
	}
}
