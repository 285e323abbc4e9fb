package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/heraldpush/herald/pkg/routes"
)

// pendingMarks is the per-user marker that tells a connecting device's push-server whether to ask for
// pending messages at all (pkg/routes: set after a message is stored, cleared only by a lookup that
// found nothing).
type pendingMarks interface {
	MarkPending(ctx context.Context, uids []string, ttl time.Duration) error
	PendingMark(ctx context.Context, uid string) (string, error)
	ClearPending(ctx context.Context, uid, seen string) (bool, error)
}

var _ pendingMarks = (*routes.Store)(nil)

// marker sets pending markers for stored messages. A mark Redis refused is kept and tried again every
// second until it lands, so a device that connects once Redis is back still gets its replay.
type marker struct {
	marks   pendingMarks
	logger  *slog.Logger
	metrics *metrics

	// mu guards owed: uid → the longest ttl of the marks it is owed.
	mu   sync.Mutex
	owed map[string]time.Duration
}

// maxOwedMarks bounds the marks kept for retry; beyond it a mark is dropped and counted, and that
// user's stored messages wait for a push that marks again or for their ttl.
const maxOwedMarks = 1 << 20

func newMarker(marks pendingMarks, logger *slog.Logger, m *metrics) *marker {
	return &marker{marks: marks, logger: logger, metrics: m, owed: map[string]time.Duration{}}
}

// mark marks uids after a message with ttl was stored for them.
func (k *marker) mark(ctx context.Context, uids []string, ttl time.Duration) {
	err := k.marks.MarkPending(ctx, uids, ttl)
	if err == nil {
		return
	}
	k.logger.Warn("mark pending messages; will retry", "uids", len(uids), "err", err)
	k.mu.Lock()
	defer k.mu.Unlock()
	for _, uid := range uids {
		if _, ok := k.owed[uid]; !ok && len(k.owed) >= maxOwedMarks {
			k.metrics.marksDropped.Inc()
			continue
		}
		k.owed[uid] = max(k.owed[uid], ttl)
	}
}

// run retries owed marks every second until ctx ends.
func (k *marker) run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		k.mu.Lock()
		owed := k.owed
		k.owed = map[string]time.Duration{}
		k.mu.Unlock()
		byTTL := map[time.Duration][]string{}
		for uid, ttl := range owed {
			byTTL[ttl] = append(byTTL[ttl], uid)
		}
		for ttl, uids := range byTTL {
			opCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
			k.mark(opCtx, uids, ttl)
			cancel()
		}
	}
}
