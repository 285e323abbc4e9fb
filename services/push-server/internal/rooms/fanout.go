package rooms

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/services/push-server/internal/wsconn"
)

// Fanout sends room messages to the room's members here. With a window, a room's messages of one
// window become one frame (the danmaku lesson: the kernel's packet rate is the limit, not the message
// count); without one, each message is a frame at once. Either way a frame is encoded once and the same
// bytes go to every member; a member whose queue overflows is closed as a slow consumer (1013), as
// for pushes.
type Fanout struct {
	table  *Table
	window time.Duration
	sent   func(frames, writes int) // counts what was written, for metrics

	mu      sync.Mutex
	pending map[string][]wire.Message // by room: the messages of the current window
}

// NewFanout returns a fanout over table merging each room's messages of window (0: none).
func NewFanout(table *Table, window time.Duration, sent func(frames, writes int)) *Fanout {
	return &Fanout{table: table, window: window, sent: sent, pending: map[string][]wire.Message{}}
}

// Publish hands m to the room's members here and returns how many there are now. With a window it
// is sent with the window's other messages when the window ends.
func (f *Fanout) Publish(room string, m wire.Message) int {
	members := f.table.Len(room)
	if members == 0 {
		return 0
	}
	if f.window <= 0 {
		f.send(room, []wire.Message{m})
		return members
	}
	f.mu.Lock()
	f.pending[room] = append(f.pending[room], m)
	f.mu.Unlock()
	return members
}

// Run flushes the windows until ctx ends; without a window it returns at once.
func (f *Fanout) Run(ctx context.Context) {
	if f.window <= 0 {
		return
	}
	t := time.NewTicker(f.window)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			f.flush()
			return
		case <-t.C:
			f.flush()
		}
	}
}

// flush sends every room's pending messages. The batch is taken under the lock and sent outside it,
// so publishing into the next window never waits for a fan-out.
func (f *Fanout) flush() {
	f.mu.Lock()
	batch := f.pending
	if len(batch) == 0 {
		f.mu.Unlock()
		return
	}
	f.pending = make(map[string][]wire.Message, len(batch))
	f.mu.Unlock()
	for room, items := range batch {
		f.send(room, items)
	}
}

// send writes one frame of items to every member of room here.
func (f *Fanout) send(room string, items []wire.Message) {
	members := f.table.members(room)
	if len(members) == 0 {
		return
	}
	b, err := json.Marshal(wire.RoomFrame{Type: wire.TypeRoom, Room: room, Items: items})
	if err != nil {
		return // the items were checked when published; nothing here can fail to encode
	}
	p := wsconn.Prepare(b)
	for _, m := range members {
		if m.holding.Load() && m.hold(items) {
			continue
		}
		m.c.Write(p) // a member too slow for its queue is closed by the write (1013)
	}
	if f.sent != nil {
		f.sent(1, len(members))
	}
}
