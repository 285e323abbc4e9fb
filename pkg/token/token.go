// Package token mints and checks the JWTs that carry a login from auth to the
// push-servers.
//
// auth holds the Ed25519 private key and signs; push-servers hold only public
// keys and verify, so a compromised push-server cannot mint logins. A token is
// accepted by every push-server, not only the one auth picked, so a device
// whose node is gone can reconnect anywhere.
//
// Claims follow the contract in DESIGN.md: sub = uid, dev = device,
// aud = "herald", exp, iat, jti, and the header names the signing key in kid.
package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/heraldpush/herald/pkg/ident"
)

const (
	// Audience is the aud claim of every Herald token. Checking it keeps
	// tokens minted for other systems with a shared key from opening sockets.
	Audience = "herald"

	// DefaultTTL is the lifetime NewSigner uses when given none. A token is
	// only checked when a connection opens, so a day lets devices ride out
	// reconnects without logging in again and still bounds a leaked token.
	DefaultTTL = 24 * time.Hour

	// Leeway is how far past exp a token is still accepted, to absorb clock
	// skew between auth and the push-servers.
	Leeway = 30 * time.Second
)

var (
	// ErrExpired means the token was genuine and well formed but its exp has
	// passed (beyond Leeway): the client should log in again.
	ErrExpired = errors.New("token expired")

	// ErrInvalid means the token must not be trusted: malformed, signed with
	// another algorithm or an unknown or wrong key, meant for another
	// audience, or with a missing or malformed uid or device.
	ErrInvalid = errors.New("token invalid")

	errUnknownKey = errors.New("unknown key id")
	errBadClaims  = errors.New("claims not as Herald issues them")
)

// Reason names what was wrong with a token Verify refused, in a word a client may see and an operator
// can count: expired, unknown_key, bad_signature, wrong_audience, not_yet_valid, malformed,
// bad_claims, or invalid for anything else. It says which check failed, never anything of the keys.
func Reason(err error) string {
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrExpired):
		return "expired"
	case errors.Is(err, errUnknownKey):
		return "unknown_key"
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return "bad_signature"
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return "wrong_audience"
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return "not_yet_valid"
	case errors.Is(err, jwt.ErrTokenMalformed):
		return "malformed"
	case errors.Is(err, errBadClaims):
		return "bad_claims"
	default:
		return "invalid"
	}
}

// KeyID names a public key for the kid header. It is derived from the key
// itself (base64url of the first 12 bytes of its SHA-256) so that signer and
// verifiers agree without anyone configuring key names.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return base64.RawURLEncoding.EncodeToString(sum[:12])
}

// Claims is what a verified token says.
type Claims struct {
	UID       string
	Device    string
	Rooms     []string // the rooms the holder may join: names, or prefixes ending in "*"
	ID        string   // jti, unique per token
	IssuedAt  time.Time
	ExpiresAt time.Time
}

// Signer mints tokens. It is safe for concurrent use once configured.
type Signer struct {
	// Now replaces time.Now when set, so tests can mint tokens at a chosen
	// time. Set it before the first Sign.
	Now func() time.Time

	priv ed25519.PrivateKey
	kid  string
	ttl  time.Duration
	err  error // a bad key is reported by Sign, keeping NewSigner simple to call
}

// NewSigner returns a Signer using priv whose tokens live for ttl; ttl <= 0
// means DefaultTTL. If priv is not a valid Ed25519 key, every Sign fails.
func NewSigner(priv ed25519.PrivateKey, ttl time.Duration) *Signer {
	if ttl <= 0 {
		ttl = DefaultTTL
	}
	s := &Signer{priv: priv, ttl: ttl}
	if len(priv) != ed25519.PrivateKeySize {
		s.err = fmt.Errorf("ed25519 private key has %d bytes, want %d", len(priv), ed25519.PrivateKeySize)
		return s
	}
	s.kid = KeyID(priv.Public().(ed25519.PublicKey))
	return s
}

// KeyID returns the kid this Signer puts in its tokens.
func (s *Signer) KeyID() string { return s.kid }

// signedClaims is the token body as written. Audience is a plain string
// because DESIGN.md promises aud = "herald", while jwt.ClaimStrings would
// write ["herald"] unless a package-wide setting of the jwt library changed.
type signedClaims struct {
	jwt.RegisteredClaims
	Audience string   `json:"aud"` // shadows RegisteredClaims.Audience in JSON
	Device   string   `json:"dev"`
	Rooms    []string `json:"rooms,omitempty"`
}

// Sign mints a token for one device of one user and returns it with the
// expiry written into it. rooms, when given, are the rooms the holder may
// join (names, or prefixes ending in "*").
func (s *Signer) Sign(uid, device string, rooms ...string) (token string, expiresAt time.Time, err error) {
	if s.err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", s.err)
	}
	if err := ident.Check("uid", uid); err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	if err := ident.Check("device", device); err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	for _, r := range rooms {
		if err := ident.CheckRoomPattern(r); err != nil {
			return "", time.Time{}, fmt.Errorf("sign token: %w", err)
		}
	}
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	// exp and iat travel as whole seconds; truncating here makes the returned
	// expiry exactly the one in the token.
	iat := now().Truncate(time.Second)
	exp := iat.Add(s.ttl).Truncate(time.Second)

	tok := jwt.NewWithClaims(jwt.SigningMethodEdDSA, signedClaims{
		RegisteredClaims: jwt.RegisteredClaims{
			Subject:   uid,
			ExpiresAt: jwt.NewNumericDate(exp),
			IssuedAt:  jwt.NewNumericDate(iat),
			ID:        rand.Text(), // 128 random bits; nothing needs jti to sort by time
		},
		Audience: Audience,
		Device:   device,
		Rooms:    rooms,
	})
	tok.Header["kid"] = s.kid
	signed, err := tok.SignedString(s.priv)
	if err != nil {
		return "", time.Time{}, fmt.Errorf("sign token: %w", err)
	}
	return signed, exp, nil
}

// verifiedClaims is the token body as read; RegisteredClaims.Audience accepts
// both a string and an array, as RFC 7519 allows.
type verifiedClaims struct {
	jwt.RegisteredClaims
	Device string   `json:"dev"`
	Rooms  []string `json:"rooms"`
}

// wellFormed checks what a push-server needs from the claims apart from
// times. The parser checks the audience too, but Verify also needs the answer
// for expired tokens, whose other claims the parser's error may not cover.
func (c *verifiedClaims) wellFormed() error {
	if !slices.Contains(c.Audience, Audience) {
		return fmt.Errorf("audience %q, want %q", []string(c.Audience), Audience)
	}
	// Checking the identifier alphabet here, not only in auth, keeps a "|"
	// out of the Redis route values push-servers build from these claims.
	if err := ident.Check("sub", c.Subject); err != nil {
		return err
	}
	for _, r := range c.Rooms {
		if err := ident.CheckRoomPattern(r); err != nil {
			return fmt.Errorf("rooms: %w", err)
		}
	}
	return ident.Check("dev", c.Device)
}

// Verifier checks tokens. It is safe for concurrent use once configured.
type Verifier struct {
	// Now replaces time.Now when set, so tests can check expiry at a chosen
	// time. Set it before the first Verify.
	Now func() time.Time

	keys   map[string]ed25519.PublicKey // by KeyID
	parser *jwt.Parser
}

// NewVerifier returns a Verifier that accepts tokens signed by any of keys.
// Passing the old and the new public key lets auth switch signing keys while
// tokens signed with the old one are still in use; the kid header picks the
// key, so adding keys does not slow verification down.
func NewVerifier(keys ...ed25519.PublicKey) *Verifier {
	v := &Verifier{keys: make(map[string]ed25519.PublicKey, len(keys))}
	for _, k := range keys {
		v.keys[KeyID(k)] = k
	}
	v.parser = jwt.NewParser(
		// Pinning the algorithm is what stops "alg: none" and HS256 tokens
		// that use the public key as an HMAC secret.
		jwt.WithValidMethods([]string{jwt.SigningMethodEdDSA.Alg()}),
		jwt.WithAudience(Audience),
		jwt.WithExpirationRequired(),
		jwt.WithLeeway(Leeway),
		jwt.WithTimeFunc(v.now),
	)
	return v
}

func (v *Verifier) now() time.Time {
	if v.Now != nil {
		return v.Now()
	}
	return time.Now()
}

func (v *Verifier) key(t *jwt.Token) (any, error) {
	kid, _ := t.Header["kid"].(string)
	k, ok := v.keys[kid]
	if !ok {
		return nil, fmt.Errorf("%w %q", errUnknownKey, kid)
	}
	return k, nil
}

// Verify checks a token and returns its claims. Errors match ErrExpired for a
// genuine token that is too old, and ErrInvalid for everything else; the
// message says what was wrong, for logs.
func (v *Verifier) Verify(token string) (Claims, error) {
	var c verifiedClaims
	_, err := v.parser.ParseWithClaims(token, &c, v.key)
	if err != nil && !errors.Is(err, jwt.ErrTokenExpired) {
		return Claims{}, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	// The library checks claims only after the signature, so from here on the
	// token is genuine. Report anything else wrong with it before expiry:
	// logging in again is the cure for an expired token only.
	if werr := c.wellFormed(); werr != nil {
		return Claims{}, fmt.Errorf("%w: %w: %w", ErrInvalid, errBadClaims, werr)
	}
	if err != nil {
		return Claims{}, fmt.Errorf("%w: %w", ErrExpired, err)
	}
	out := Claims{UID: c.Subject, Device: c.Device, Rooms: c.Rooms, ID: c.ID}
	if c.IssuedAt != nil {
		out.IssuedAt = c.IssuedAt.Time
	}
	out.ExpiresAt = c.ExpiresAt.Time // present: WithExpirationRequired
	return out, nil
}
