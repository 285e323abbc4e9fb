// Package account keeps device accounts (uid and bcrypt password hash) in the accounts table and checks
// logins against them.
package account

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/go-sql-driver/mysql"
	"golang.org/x/crypto/bcrypt"
)

var (
	// ErrBadCredentials means the uid is unknown or the password is wrong; callers must not say which.
	ErrBadCredentials = errors.New("bad credentials")
	// ErrDisabled means the password was right but the account is disabled.
	ErrDisabled = errors.New("account disabled")
	// ErrExists means an account with that uid already exists.
	ErrExists = errors.New("account exists")
	// ErrNotFound means no account has that uid.
	ErrNotFound = errors.New("account not found")
)

// Store keeps accounts in MySQL.
type Store struct {
	db   *sql.DB
	cost int
	// dummyHash is compared against when the uid is unknown, so an unknown uid costs the same bcrypt
	// work as a wrong password and the two cannot be told apart by timing.
	dummyHash []byte
}

// NewStore returns a Store over db that hashes new passwords with the given bcrypt cost
// (0 means bcrypt.DefaultCost).
func NewStore(db *sql.DB, cost int) (*Store, error) {
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	dummy, err := bcrypt.GenerateFromPassword([]byte("herald timing equaliser"), cost)
	if err != nil {
		return nil, fmt.Errorf("account store: %w", err)
	}
	return &Store{db: db, cost: cost, dummyHash: dummy}, nil
}

// Create adds an enabled account.
func (s *Store) Create(ctx context.Context, uid, password string) error {
	hash, err := bcrypt.GenerateFromPassword([]byte(password), s.cost)
	if err != nil {
		return fmt.Errorf("create account: %w", err)
	}
	_, err = s.db.ExecContext(ctx, "INSERT INTO accounts (uid, password_hash) VALUES (?, ?)", uid, hash)
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) && myErr.Number == 1062 { // ER_DUP_ENTRY
		return ErrExists
	}
	if err != nil {
		return fmt.Errorf("create account: %w", err)
	}
	return nil
}

// Authenticate returns nil when password is uid's and the account is enabled, ErrBadCredentials or
// ErrDisabled when not, and another error when the database failed. A disabled account is reported only
// to a caller who knew the password.
func (s *Store) Authenticate(ctx context.Context, uid, password string) error {
	var hash []byte
	var disabled bool
	err := s.db.QueryRowContext(ctx, "SELECT password_hash, disabled FROM accounts WHERE uid = ?", uid).Scan(&hash, &disabled)
	if errors.Is(err, sql.ErrNoRows) {
		_ = bcrypt.CompareHashAndPassword(s.dummyHash, []byte(password))
		return ErrBadCredentials
	}
	if err != nil {
		return fmt.Errorf("authenticate: %w", err)
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(password)) != nil {
		return ErrBadCredentials
	}
	if disabled {
		return ErrDisabled
	}
	return nil
}

// SetDisabled disables or re-enables an account.
func (s *Store) SetDisabled(ctx context.Context, uid string, disabled bool) error {
	return s.update(ctx, "UPDATE accounts SET disabled = ? WHERE uid = ?", disabled, uid)
}

// SetPassword replaces an account's password.
func (s *Store) SetPassword(ctx context.Context, uid, password string) error {
	hash, err := bcrypt.GenerateFromPassword([]byte(password), s.cost)
	if err != nil {
		return fmt.Errorf("set password: %w", err)
	}
	return s.update(ctx, "UPDATE accounts SET password_hash = ? WHERE uid = ?", hash, uid)
}

func (s *Store) update(ctx context.Context, query string, args ...any) error {
	res, err := s.db.ExecContext(ctx, query, args...)
	if err != nil {
		return fmt.Errorf("update account: %w", err)
	}
	if n, _ := res.RowsAffected(); n == 0 {
		var one int
		// MySQL counts changed rows only: an unchanged row still exists.
		err := s.db.QueryRowContext(ctx, "SELECT 1 FROM accounts WHERE uid = ?", args[len(args)-1]).Scan(&one)
		if errors.Is(err, sql.ErrNoRows) {
			return ErrNotFound
		}
		if err != nil {
			return fmt.Errorf("update account: %w", err)
		}
	}
	return nil
}
