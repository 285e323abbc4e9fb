package routes

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// The pending marker, herald:pending:{<uid>}, is set while a user may have pending offline messages, so
// a device that connects with nothing pending costs no database query and no call to push-route.
// push-route marks a user after it stored a message for them, and clears the marker only when a
// lookup found nothing pending, by compare-and-delete against the value read before that lookup. So a
// marker can be stale (it costs one lookup, which then clears it) but never missing while a message
// waits: a message stored during the lookup marks again and the clear leaves the marker.

// MarkPending marks every uid as possibly having pending messages, for at least ttl, in one round trip.
func (s *Store) MarkPending(ctx context.Context, uids []string, ttl time.Duration) error {
	if ttl <= 0 {
		return fmt.Errorf("mark pending: %w: ttl %v", ErrInvalid, ttl)
	}
	calls := make([]scriptCall, len(uids))
	for i, uid := range uids {
		if uid == "" {
			return fmt.Errorf("mark pending: %w: empty uid", ErrInvalid)
		}
		calls[i] = scriptCall{script: markScript, keys: []string{pendingKey(uid)}, args: []any{ttl.Milliseconds()}}
	}
	if err := s.runPipelined(ctx, calls, nil); err != nil {
		return fmt.Errorf("mark pending: %w", err)
	}
	return nil
}

// PendingMark returns uid's marker as it is now ("" when there is none), to hand to ClearPending
// after a lookup found nothing pending.
func (s *Store) PendingMark(ctx context.Context, uid string) (string, error) {
	v, err := s.rdb.Get(ctx, pendingKey(uid)).Result()
	if errors.Is(err, redis.Nil) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("read pending mark: %w", err)
	}
	return v, nil
}

// ClearPending removes uid's marker if it still holds seen, the value PendingMark gave before the
// lookup that found nothing. It reports whether it removed it.
func (s *Store) ClearPending(ctx context.Context, uid, seen string) (bool, error) {
	if seen == "" {
		return false, nil
	}
	n, err := s.run(ctx, clearScript, []string{pendingKey(uid)}, seen).Int64()
	if err != nil {
		return false, fmt.Errorf("clear pending mark: %w", err)
	}
	return n == 1, nil
}
