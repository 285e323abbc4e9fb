// Package apikey creates, checks and revokes the API keys business backends use against auth and
// push-route. Only a SHA-256 of each key is stored: a key is 32 random bytes, so a fast hash cannot be
// brute-forced and lets every request find its key by index.
package apikey

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Prefix starts every key, so a leaked key is easy to recognise in logs and secret scanners.
const Prefix = "hk_"

// ErrInvalid means the key is unknown, malformed or revoked. Callers answer 401 without saying which.
var ErrInvalid = errors.New("invalid api key")

// ErrNotFound means no key has the given id.
var ErrNotFound = errors.New("api key not found")

// Key describes a stored key; the key itself is never stored.
type Key struct {
	ID        int64
	Name      string
	Prefix    string // the first characters of the key, to tell keys apart in lists
	CreatedAt time.Time
	RevokedAt *time.Time
}

// Store keeps keys in the api_keys table.
type Store struct {
	db *sql.DB
}

// NewStore returns a Store over db, whose schema is migrated.
func NewStore(db *sql.DB) *Store { return &Store{db: db} }

// Create makes a new key named name and returns it in clear: the only time it is ever seen.
func (s *Store) Create(ctx context.Context, name string) (string, Key, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", Key{}, fmt.Errorf("create api key: %w", err)
	}
	plain := Prefix + base64.RawURLEncoding.EncodeToString(raw)
	hash := sha256.Sum256([]byte(plain))
	k := Key{Name: name, Prefix: plain[:len(Prefix)+6], CreatedAt: time.Now().UTC().Truncate(time.Millisecond)}
	res, err := s.db.ExecContext(ctx,
		"INSERT INTO api_keys (name, prefix, key_hash, created_at) VALUES (?, ?, ?, ?)",
		k.Name, k.Prefix, hash[:], k.CreatedAt)
	if err != nil {
		return "", Key{}, fmt.Errorf("create api key: %w", err)
	}
	if k.ID, err = res.LastInsertId(); err != nil {
		return "", Key{}, fmt.Errorf("create api key: %w", err)
	}
	return plain, k, nil
}

// Verify returns the live key matching plain, or ErrInvalid. Other errors mean the database failed.
func (s *Store) Verify(ctx context.Context, plain string) (Key, error) {
	if !strings.HasPrefix(plain, Prefix) || len(plain) > 128 {
		return Key{}, ErrInvalid
	}
	hash := sha256.Sum256([]byte(plain))
	var k Key
	err := s.db.QueryRowContext(ctx,
		"SELECT id, name, prefix, created_at, revoked_at FROM api_keys WHERE key_hash = ?", hash[:]).
		Scan(&k.ID, &k.Name, &k.Prefix, &k.CreatedAt, &k.RevokedAt)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return Key{}, ErrInvalid
	case err != nil:
		return Key{}, fmt.Errorf("verify api key: %w", err)
	case k.RevokedAt != nil:
		return Key{}, ErrInvalid
	}
	return k, nil
}

// Revoke makes the key with id unusable from now on. Revoking a revoked key is not an error.
func (s *Store) Revoke(ctx context.Context, id int64) error {
	res, err := s.db.ExecContext(ctx,
		"UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?) WHERE id = ?", time.Now().UTC(), id)
	if err != nil {
		return fmt.Errorf("revoke api key: %w", err)
	}
	var exists int
	if n, _ := res.RowsAffected(); n == 0 {
		// MySQL counts only changed rows, so look before calling it missing.
		if err := s.db.QueryRowContext(ctx, "SELECT 1 FROM api_keys WHERE id = ?", id).Scan(&exists); errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		} else if err != nil {
			return fmt.Errorf("revoke api key: %w", err)
		}
	}
	return nil
}

// List returns every key, newest first.
func (s *Store) List(ctx context.Context) ([]Key, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT id, name, prefix, created_at, revoked_at FROM api_keys ORDER BY id DESC")
	if err != nil {
		return nil, fmt.Errorf("list api keys: %w", err)
	}
	defer rows.Close()
	var keys []Key
	for rows.Next() {
		var k Key
		if err := rows.Scan(&k.ID, &k.Name, &k.Prefix, &k.CreatedAt, &k.RevokedAt); err != nil {
			return nil, fmt.Errorf("list api keys: %w", err)
		}
		keys = append(keys, k)
	}
	return keys, rows.Err()
}
