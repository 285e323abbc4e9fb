package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"

	"github.com/go-sql-driver/mysql"
	"golang.org/x/crypto/bcrypt"
)

// errBadLogin means the username is unknown or the password wrong; the two are never told apart.
var errBadLogin = errors.New("unknown admin or wrong password")

// adminStore checks operators' logins against the admins table (bcrypt hashes).
type adminStore struct {
	db   *sql.DB
	cost int
	// dummyHash is compared against for an unknown username, so it costs the same as a wrong password.
	dummyHash []byte
}

func newAdminStore(db *sql.DB, cost int) (*adminStore, error) {
	dummy, err := bcrypt.GenerateFromPassword([]byte("herald admin timing equaliser"), cost)
	if err != nil {
		return nil, fmt.Errorf("admin store: %w", err)
	}
	return &adminStore{db: db, cost: cost, dummyHash: dummy}, nil
}

// ensureFirst creates the configured admin when the table has no such user. With no password given it
// makes one up and logs it: that log line is the only place it is ever shown. An existing admin is left
// alone, password included.
func (s *adminStore) ensureFirst(ctx context.Context, logger *slog.Logger, user, password string) error {
	generated := password == ""
	if generated {
		password = rand.Text()
	}
	hash, err := bcrypt.GenerateFromPassword([]byte(password), s.cost)
	if err != nil {
		return fmt.Errorf("first admin: %w", err)
	}
	_, err = s.db.ExecContext(ctx, "INSERT INTO admins (username, password_hash) VALUES (?, ?)", user, hash)
	var myErr *mysql.MySQLError
	switch {
	case errors.As(err, &myErr) && myErr.Number == 1062: // ER_DUP_ENTRY: there already, maybe from another instance
		return nil
	case err != nil:
		return fmt.Errorf("first admin: %w", err)
	case generated:
		logger.Warn("created the first admin with a generated password; it is shown only in this line", "user", user, "password", password)
	default:
		logger.Info("created the first admin", "user", user)
	}
	return nil
}

// authenticate returns nil when password is user's, errBadLogin when not, another error when MySQL failed.
func (s *adminStore) authenticate(ctx context.Context, user, password string) error {
	var hash []byte
	err := s.db.QueryRowContext(ctx, "SELECT password_hash FROM admins WHERE username = ?", user).Scan(&hash)
	if errors.Is(err, sql.ErrNoRows) {
		_ = bcrypt.CompareHashAndPassword(s.dummyHash, []byte(password))
		return errBadLogin
	}
	if err != nil {
		return fmt.Errorf("authenticate admin: %w", err)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return errBadLogin
	}
	return nil
}
