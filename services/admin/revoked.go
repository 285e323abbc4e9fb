package main

import (
	"context"
	"database/sql"
	"time"
)

// revokedStore is the list of logged-out sessions every admin instance shares, in MySQL.
type revokedStore struct {
	db *sql.DB
}

// revoke records id as logged out until expires, and drops entries whose session has expired: logouts
// are rare, so sweeping at each one keeps the table small without a loop of its own.
func (s revokedStore) revoke(ctx context.Context, id string, expires time.Time) error {
	if _, err := s.db.ExecContext(ctx,
		"INSERT INTO admin_revoked_sessions (id, expires_at) VALUES (?, ?) ON DUPLICATE KEY UPDATE expires_at = VALUES(expires_at)",
		id, expires.UTC()); err != nil {
		return err
	}
	_, err := s.db.ExecContext(ctx, "DELETE FROM admin_revoked_sessions WHERE expires_at < ? LIMIT 1000", time.Now().UTC())
	return err
}

func (s revokedStore) revoked(ctx context.Context, id string) (bool, error) {
	var one int
	err := s.db.QueryRowContext(ctx, "SELECT 1 FROM admin_revoked_sessions WHERE id = ?", id).Scan(&one)
	if err == sql.ErrNoRows {
		return false, nil
	}
	return err == nil, err
}
