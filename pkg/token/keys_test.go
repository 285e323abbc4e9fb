package token

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func privatePEM(tb testing.TB) ([]byte, []byte) {
	tb.Helper()
	pub, priv := newKey(tb)
	privPEM, err := MarshalPrivateKeyPEM(priv)
	if err != nil {
		tb.Fatal(err)
	}
	pubPEM, err := MarshalPublicKeyPEM(pub)
	if err != nil {
		tb.Fatal(err)
	}
	return privPEM, pubPEM
}

func writeFile(tb testing.TB, data []byte) string {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "key.pem")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}

func TestPEMRoundTrip(t *testing.T) {
	pub, priv := newKey(t)
	privPEM, err := MarshalPrivateKeyPEM(priv)
	if err != nil {
		t.Fatal(err)
	}
	pubPEM, err := MarshalPublicKeyPEM(pub)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(privPEM, []byte("-----BEGIN PRIVATE KEY-----\n")) ||
		!bytes.HasPrefix(pubPEM, []byte("-----BEGIN PUBLIC KEY-----\n")) {
		t.Fatalf("unexpected PEM headers:\n%s%s", privPEM, pubPEM)
	}

	gotPriv, err := ParsePrivateKeyPEM(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	gotPub, err := ParsePublicKeyPEM(pubPEM)
	if err != nil {
		t.Fatal(err)
	}
	if !gotPriv.Equal(priv) || !gotPub.Equal(pub) {
		t.Fatal("keys changed in a PEM round trip")
	}

	// A key pair stored in one file: the private parser skips the public block.
	both := append(append([]byte(nil), pubPEM...), privPEM...)
	if got, err := ParsePrivateKeyPEM(both); err != nil || !got.Equal(priv) {
		t.Errorf("private key from a file with both keys: %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	privPEM, pubPEM := privatePEM(t)
	otherPriv, otherPub := privatePEM(t)

	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	ecDER, err := x509.MarshalPKCS8PrivateKey(ecKey)
	if err != nil {
		t.Fatal(err)
	}
	ecPubDER, err := x509.MarshalPKIXPublicKey(&ecKey.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	ecPriv := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: ecDER})
	ecPub := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: ecPubDER})
	junk := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: []byte("junk")})
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("x")})
	cat := func(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

	tests := []struct {
		name  string
		parse func([]byte) error
		data  []byte
	}{
		{"private: empty", parsePriv, nil},
		{"private: not PEM", parsePriv, []byte("hello")},
		{"private: only a public key", parsePriv, pubPEM},
		{"private: ECDSA", parsePriv, ecPriv},
		{"private: two keys", parsePriv, cat(privPEM, otherPriv)},
		{"public: empty", parsePub, nil},
		{"public: ECDSA", parsePub, ecPub},
		{"public: junk DER", parsePub, junk},
		{"public: two keys", parsePub, cat(pubPEM, otherPub)},
		{"public set: private key included", parsePubs, cat(pubPEM, privPEM)},
		{"public set: certificate", parsePubs, cat(pubPEM, cert)},
		{"public set: not PEM", parsePubs, []byte("hello")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.parse(tt.data); err == nil {
				t.Error("parse succeeded")
			}
		})
	}
}

func parsePriv(b []byte) error { _, err := ParsePrivateKeyPEM(b); return err }
func parsePub(b []byte) error  { _, err := ParsePublicKeyPEM(b); return err }
func parsePubs(b []byte) error { _, err := ParsePublicKeysPEM(b); return err }

func TestLoadPrivateKey(t *testing.T) {
	privPEM, _ := privatePEM(t)
	want, err := ParsePrivateKeyPEM(privPEM)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, in string
	}{
		{"path", writeFile(t, privPEM)},
		{"inline", string(privPEM)},
		{"inline with escaped newlines", strings.ReplaceAll(string(privPEM), "\n", `\n`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := LoadPrivateKey(tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if !got.Equal(want) {
				t.Error("loaded a different key")
			}
		})
	}
	for _, bad := range []string{"", filepath.Join(t.TempDir(), "missing.pem")} {
		if _, err := LoadPrivateKey(bad); err == nil {
			t.Errorf("LoadPrivateKey(%q) succeeded", bad)
		}
	}
}

func TestLoadPublicKeys(t *testing.T) {
	pubs := make([][]byte, 3)
	for i := range pubs {
		_, pubs[i] = privatePEM(t)
	}
	// Two keys in one file (a rotation) plus one inline.
	path := writeFile(t, append(append([]byte(nil), pubs[0]...), pubs[1]...))
	keys, err := LoadPublicKeys(path, string(pubs[2]))
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 {
		t.Fatalf("loaded %d keys, want 3", len(keys))
	}
	for i, p := range pubs {
		want, err := ParsePublicKeyPEM(p)
		if err != nil {
			t.Fatal(err)
		}
		if !keys[i].Equal(want) {
			t.Errorf("key %d differs", i)
		}
	}

	for _, bad := range [][]string{nil, {""}, {filepath.Join(t.TempDir(), "missing.pem")}, {path, "junk"}} {
		if _, err := LoadPublicKeys(bad...); err == nil {
			t.Errorf("LoadPublicKeys(%q) succeeded", bad)
		}
	}
}

// TestLoadedKeysWork ties the pieces together the way the services use them:
// auth loads the private key, push-servers load the public ones.
func TestLoadedKeysWork(t *testing.T) {
	privPEM, pubPEM := privatePEM(t)
	priv, err := LoadPrivateKey(writeFile(t, privPEM))
	if err != nil {
		t.Fatal(err)
	}
	pubs, err := LoadPublicKeys(string(pubPEM))
	if err != nil {
		t.Fatal(err)
	}
	c, err := NewVerifier(pubs...).Verify(sign(t, NewSigner(priv, 0), "alice", "phone"))
	if err != nil || c.UID != "alice" {
		t.Fatalf("Verify = %+v, %v", c, err)
	}
}

func TestWriteKeyFiles(t *testing.T) {
	dir := t.TempDir()
	priv, pub := filepath.Join(dir, "k.pem"), filepath.Join(dir, "k.pub.pem")
	kid, err := WriteKeyFiles(priv, pub)
	if err != nil {
		t.Fatal(err)
	}
	privKey, err := LoadPrivateKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	pubKeys, err := LoadPublicKeys(pub)
	if err != nil || len(pubKeys) != 1 {
		t.Fatalf("public keys %v, %v", pubKeys, err)
	}
	if KeyID(pubKeys[0]) != kid || !pubKeys[0].Equal(privKey.Public()) {
		t.Fatal("written keys are not one pair with the returned kid")
	}
	if st, err := os.Stat(priv); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("private key mode %v, %v; want 0600", st.Mode(), err)
	}
	if _, err := WriteKeyFiles(priv, pub); err == nil {
		t.Fatal("existing key files overwritten")
	}
}
