// Package inbox keeps the messages push-route promised to deliver later: a message with a ttl stays
// pending for each of its users until a device of that user acks it or the ttl ends. It also remembers
// caller-supplied message ids, so a repeated push call is recognised.
package inbox

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/heraldpush/herald/pkg/wire"
)

// ErrDuplicate means a message with this id was saved before: the call is a repeat.
var ErrDuplicate = errors.New("message id already used")

// Store keeps messages and inboxes in MySQL.
type Store struct {
	db *sql.DB
	// IdempotencyWindow is how long a caller id is remembered when its message was not stored for
	// anyone (ttl 0); stored messages are remembered as long as they are kept.
	IdempotencyWindow time.Duration
	// MaxPending bounds one replay.
	MaxPending int
	// Timeout bounds each call's work (0: only the caller's context does). A frozen MySQL holds every
	// pooled connection until its I/O deadline, and callers queue for them; the bound makes such a call
	// fail in time for its request to answer 503 rather than hang.
	Timeout time.Duration
}

func (s *Store) bound(ctx context.Context) (context.Context, context.CancelFunc) {
	if s.Timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, s.Timeout)
}

// NewStore returns a Store over db, whose schema is migrated.
func NewStore(db *sql.DB) *Store {
	return &Store{db: db, IdempotencyWindow: 24 * time.Hour, MaxPending: 1000}
}

// Save records m and, when ttl > 0, makes it pending for every uid, in one transaction: after Save
// returns nil the message survives a crash. It returns ErrDuplicate when m.ID was saved before.
func (s *Store) Save(ctx context.Context, m wire.Message, uids []string, ttl time.Duration, now time.Time) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	expires := now.Add(s.IdempotencyWindow)
	if ttl > 0 {
		expires = now.Add(ttl)
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("save message: %w", err)
	}
	defer tx.Rollback()
	_, err = tx.ExecContext(ctx,
		"INSERT INTO messages (id, data, ts, ttl_s, created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?)",
		m.ID, []byte(m.Data), m.TS, int64(ttl/time.Second), now.UTC(), expires.UTC())
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) && myErr.Number == 1062 { // ER_DUP_ENTRY
		return ErrDuplicate
	}
	if err != nil {
		return fmt.Errorf("save message: %w", err)
	}
	if ttl > 0 {
		for start := 0; start < len(uids); start += 500 {
			batch := uids[start:min(start+500, len(uids))]
			q := "INSERT INTO inbox (uid, message_id, expires_at) VALUES " + strings.TrimSuffix(strings.Repeat("(?, ?, ?),", len(batch)), ",")
			args := make([]any, 0, 3*len(batch))
			for _, uid := range batch {
				args = append(args, uid, m.ID, expires.UTC())
			}
			if _, err := tx.ExecContext(ctx, q, args...); err != nil {
				return fmt.Errorf("save inbox: %w", err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("save message: %w", err)
	}
	return nil
}

// Ack clears the acked messages from their users' inboxes. Acks of unknown or already cleared
// messages are ignored: a device may ack twice.
func (s *Store) Ack(ctx context.Context, acks []wire.Ack) error {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	for start := 0; start < len(acks); start += 500 {
		batch := acks[start:min(start+500, len(acks))]
		q := "DELETE FROM inbox WHERE (uid, message_id) IN (" + strings.TrimSuffix(strings.Repeat("(?, ?),", len(batch)), ",") + ")"
		args := make([]any, 0, 2*len(batch))
		for _, a := range batch {
			args = append(args, a.UID, a.ID)
		}
		if _, err := s.db.ExecContext(ctx, q, args...); err != nil {
			return fmt.Errorf("ack: %w", err)
		}
	}
	return nil
}

// Pending returns uid's unexpired pending messages in the order they were stored (at most MaxPending).
func (s *Store) Pending(ctx context.Context, uid string, now time.Time) ([]wire.Message, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, `
		SELECT m.id, m.data, m.ts FROM inbox i JOIN messages m ON m.id = i.message_id
		WHERE i.uid = ? AND i.expires_at > ? ORDER BY i.seq LIMIT ?`, uid, now.UTC(), s.MaxPending)
	if err != nil {
		return nil, fmt.Errorf("pending: %w", err)
	}
	defer rows.Close()
	msgs := []wire.Message{}
	for rows.Next() {
		var m wire.Message
		var data []byte
		if err := rows.Scan(&m.ID, &data, &m.TS); err != nil {
			return nil, fmt.Errorf("pending: %w", err)
		}
		m.Data = data
		msgs = append(msgs, m)
	}
	return msgs, rows.Err()
}

// PendingFor returns the uids for whom message id is still pending.
func (s *Store) PendingFor(ctx context.Context, id string, now time.Time) (map[string]bool, error) {
	ctx, cancel := s.bound(ctx)
	defer cancel()
	rows, err := s.db.QueryContext(ctx, "SELECT uid FROM inbox WHERE message_id = ? AND expires_at > ?", id, now.UTC())
	if err != nil {
		return nil, fmt.Errorf("pending for: %w", err)
	}
	defer rows.Close()
	uids := map[string]bool{}
	for rows.Next() {
		var uid string
		if err := rows.Scan(&uid); err != nil {
			return nil, fmt.Errorf("pending for: %w", err)
		}
		uids[uid] = true
	}
	return uids, rows.Err()
}

// Expire deletes expired inbox entries and messages, a batch at a time, and returns how many rows
// went. Several push-route instances may run it at once.
func (s *Store) Expire(ctx context.Context, now time.Time) (int64, error) {
	var total int64
	for _, q := range []string{
		"DELETE FROM inbox WHERE expires_at <= ? LIMIT 5000",
		"DELETE FROM messages WHERE expires_at <= ? LIMIT 5000",
	} {
		for {
			res, err := s.db.ExecContext(ctx, q, now.UTC())
			if err != nil {
				return total, fmt.Errorf("expire: %w", err)
			}
			n, _ := res.RowsAffected()
			total += n
			if n < 5000 {
				break
			}
		}
	}
	return total, nil
}
