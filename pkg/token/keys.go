package token

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
)

// PEM block types: PKCS#8 for private keys and PKIX for public keys, the forms
// `openssl genpkey -algorithm ed25519` and `openssl pkey -pubout` write.
const (
	pemPrivate = "PRIVATE KEY"
	pemPublic  = "PUBLIC KEY"
)

// GenerateKey returns a new Ed25519 key pair from crypto/rand.
func GenerateKey() (ed25519.PublicKey, ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("generate key: %w", err)
	}
	return pub, priv, nil
}

// MarshalPrivateKeyPEM encodes priv as a PKCS#8 "PRIVATE KEY" PEM block.
func MarshalPrivateKeyPEM(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("marshal private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivate, Bytes: der}), nil
}

// MarshalPublicKeyPEM encodes pub as a PKIX "PUBLIC KEY" PEM block.
// Concatenating several of them gives a file LoadPublicKeys reads as a set.
func MarshalPublicKeyPEM(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("marshal public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublic, Bytes: der}), nil
}

// ParsePrivateKeyPEM decodes the one Ed25519 "PRIVATE KEY" block in data.
// More than one private key is an error rather than a guess at which to use.
func ParsePrivateKeyPEM(data []byte) (ed25519.PrivateKey, error) {
	blocks, err := decodePEM(data)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	var found ed25519.PrivateKey
	for _, b := range blocks {
		if b.Type != pemPrivate {
			continue // such as the matching public key, kept in the same file
		}
		if found != nil {
			return nil, errors.New("parse private key: more than one PRIVATE KEY block")
		}
		k, err := x509.ParsePKCS8PrivateKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse private key: %w", err)
		}
		priv, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("parse private key: %T is not an Ed25519 key", k)
		}
		found = priv
	}
	if found == nil {
		return nil, errors.New("parse private key: no PRIVATE KEY block")
	}
	return found, nil
}

// ParsePublicKeyPEM decodes the one Ed25519 "PUBLIC KEY" block in data; use
// ParsePublicKeysPEM for a set of keys.
func ParsePublicKeyPEM(data []byte) (ed25519.PublicKey, error) {
	keys, err := ParsePublicKeysPEM(data)
	if err != nil {
		return nil, err
	}
	if len(keys) != 1 {
		return nil, fmt.Errorf("parse public key: %d PUBLIC KEY blocks, want 1", len(keys))
	}
	return keys[0], nil
}

// ParsePublicKeysPEM decodes every "PUBLIC KEY" block in data, in order, so
// that one file can carry the keys of a rotation. A private key in the data is
// an error: push-servers must never be handed it.
func ParsePublicKeysPEM(data []byte) ([]ed25519.PublicKey, error) {
	blocks, err := decodePEM(data)
	if err != nil {
		return nil, fmt.Errorf("parse public keys: %w", err)
	}
	var keys []ed25519.PublicKey
	for _, b := range blocks {
		switch b.Type {
		case pemPublic:
		case pemPrivate:
			return nil, errors.New("parse public keys: found a PRIVATE KEY block; give push-servers only public keys")
		default:
			return nil, fmt.Errorf("parse public keys: unexpected %q block", b.Type)
		}
		k, err := x509.ParsePKIXPublicKey(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse public keys: %w", err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("parse public keys: %T is not an Ed25519 key", k)
		}
		keys = append(keys, pub)
	}
	if len(keys) == 0 {
		return nil, errors.New("parse public keys: no PUBLIC KEY block")
	}
	return keys, nil
}

// decodePEM returns every PEM block in data; it fails when there is none so
// that a path mistaken for inline PEM, or an empty file, says so.
func decodePEM(data []byte) ([]*pem.Block, error) {
	var blocks []*pem.Block
	for {
		var b *pem.Block
		b, data = pem.Decode(data)
		if b == nil {
			break
		}
		blocks = append(blocks, b)
	}
	if len(blocks) == 0 {
		return nil, errors.New("no PEM data")
	}
	return blocks, nil
}

// LoadPrivateKey reads the signing key from pemOrPath: inline PEM text (say,
// from an environment variable) or else the path of a PEM file.
func LoadPrivateKey(pemOrPath string) (ed25519.PrivateKey, error) {
	data, err := pemOrFile(pemOrPath)
	if err != nil {
		return nil, fmt.Errorf("load private key: %w", err)
	}
	return ParsePrivateKeyPEM(data)
}

// LoadPublicKeys reads verification keys from each of pemOrPaths, inline PEM
// or a file path, and returns all of them; each may hold several keys.
func LoadPublicKeys(pemOrPaths ...string) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for _, s := range pemOrPaths {
		data, err := pemOrFile(s)
		if err != nil {
			return nil, fmt.Errorf("load public keys: %w", err)
		}
		ks, err := ParsePublicKeysPEM(data)
		if err != nil {
			return nil, err
		}
		keys = append(keys, ks...)
	}
	if len(keys) == 0 {
		return nil, errors.New("load public keys: none given")
	}
	return keys, nil
}

// pemOrFile tells inline PEM from a path by the "-----BEGIN" marker, which no
// sensible path contains. Inline PEM whose line breaks arrived as literal \n
// (common when a key is squeezed into one environment variable line) is
// accepted too.
func pemOrFile(s string) ([]byte, error) {
	if strings.Contains(s, "-----BEGIN") {
		if !strings.Contains(s, "\n") {
			s = strings.ReplaceAll(s, `\n`, "\n")
		}
		return []byte(s), nil
	}
	if strings.TrimSpace(s) == "" {
		return nil, errors.New("empty key path")
	}
	data, err := os.ReadFile(s)
	if err != nil {
		return nil, err
	}
	return data, nil
}

// WriteKeyFiles generates a key pair and writes it as PEM: the private key to privFile (mode 0600),
// for auth, and the public key to pubFile, for the push-servers. It never overwrites a file, since a
// key in use must not be replaced by accident. It returns the new key's id.
func WriteKeyFiles(privFile, pubFile string) (string, error) {
	pub, priv, err := GenerateKey()
	if err != nil {
		return "", err
	}
	privPEM, err := MarshalPrivateKeyPEM(priv)
	if err != nil {
		return "", err
	}
	pubPEM, err := MarshalPublicKeyPEM(pub)
	if err != nil {
		return "", err
	}
	for _, f := range []struct {
		name string
		data []byte
		mode os.FileMode
	}{{privFile, privPEM, 0o600}, {pubFile, pubPEM, 0o644}} {
		fh, err := os.OpenFile(f.name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, f.mode)
		if err != nil {
			return "", err
		}
		_, werr := fh.Write(f.data)
		if cerr := fh.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return "", werr
		}
	}
	return KeyID(pub), nil
}
