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
	pending map[string][]wire.Message // by room: the messages of the current window, or not sent yet
	sending map[string]bool           // without a window: the rooms a sender goroutine is draining
	drained *sync.Cond                // signalled when a sender takes a room's queue
}

// maxQueued bounds a room's queue without a window: a publisher waits while it is full, so a room
// published into faster than its members can be written pushes back on push-route's calls instead of
// growing without bound.
const maxQueued = 1024

// NewFanout returns a fanout over table merging each room's messages of window (0: none).
func NewFanout(table *Table, window time.Duration, sent func(frames, writes int)) *Fanout {
	f := &Fanout{table: table, window: window, sent: sent, pending: map[string][]wire.Message{}, sending: map[string]bool{}}
	f.drained = sync.NewCond(&f.mu)
	return f
}

// Publish hands m to the room's members here and returns how many there are now. With a window it
// is sent with the window's other messages when the window ends; without one, as a frame of its own,
// in publish order, by a goroutine that drains the room's queue: the caller (push-route's call) does
// not wait for a fan-out to thousands of members.
func (f *Fanout) Publish(room string, m wire.Message) int {
	members := f.table.Len(room)
	if members == 0 {
		return 0
	}
	f.mu.Lock()
	for f.window <= 0 && len(f.pending[room]) >= maxQueued {
		f.drained.Wait()
	}
	f.pending[room] = append(f.pending[room], m)
	start := f.window <= 0 && !f.sending[room]
	if start {
		f.sending[room] = true
	}
	f.mu.Unlock()
	if start {
		go f.drain(room)
	}
	return members
}

// drain sends room's queued messages one frame each until the queue is empty (no window).
func (f *Fanout) drain(room string) {
	for {
		f.mu.Lock()
		items := f.pending[room]
		delete(f.pending, room)
		f.drained.Broadcast()
		if len(items) == 0 {
			delete(f.sending, room)
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
		for _, m := range items {
			f.send(room, []wire.Message{m})
		}
	}
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
	p := wsconn.Prepare(Frame(room, items))
	for _, m := range members {
		if m.screening.Load() {
			if mine := m.screen(items); len(mine) != len(items) {
				if len(mine) > 0 {
					m.c.WriteFrame(Frame(room, mine))
				}
				continue
			}
		}
		m.c.Write(p) // a member too slow for its queue is closed by the write (1013)
	}
	if f.sent != nil {
		f.sent(1, len(members))
	}
}

// Frame is the room frame carrying items. They were checked when published: nothing here can fail to
// encode.
func Frame(room string, items []wire.Message) []byte {
	b, _ := json.Marshal(wire.RoomFrame{Type: wire.TypeRoom, Room: room, Items: items})
	return b
}
