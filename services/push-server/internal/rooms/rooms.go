// Package rooms is the push-server's room table: which local connections are in which room. It is
// sharded by room name like the session table, and a room's members are a copy-on-write slice, so a
// fan-out walks a snapshot without a lock while joins and leaves go on beside it.
package rooms

import (
	"errors"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cespare/xxhash/v2"

	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/services/push-server/internal/wsconn"
)

const shardCount = 64

// ErrTooMany is Join's answer for a connection already in its limit of rooms.
var ErrTooMany = errors.New("too many rooms")

// Table holds the rooms of this node.
type Table struct {
	maxPerConn int
	rooms      [shardCount]roomShard // by room name
	conns      [shardCount]connShard // by connection id: each connection's rooms, to leave them all on close

	// dirty are the rooms whose member count changed since Changed last ran: the node's entries in the
	// Redis room registry that need writing.
	dirtyMu sync.Mutex
	dirty   map[string]struct{}
	changes chan struct{} // a token once a room is dirty, so the writer sleeps while nothing changes
}

type roomShard struct {
	mu    sync.Mutex
	rooms map[string]*room
}

type connShard struct {
	mu    sync.Mutex
	rooms map[*wsconn.Conn][]string
}

type room struct {
	// members is replaced, never changed in place, under the shard's lock.
	members atomic.Pointer[[]*member]
}

// member is one connection in one room. While holding (it joined to recover what it missed, and the
// history is being read), the room's messages wait in held instead of going out, so the ones it
// missed can go first. After that, for replaySettle, messages it was sent from the history are
// screened out of what arrives live: a message is appended to the history before it is sent to the
// nodes, so one published during the join can be read from the history and still be on its way here.
type member struct {
	c *wsconn.Conn
	// screening is true while holding or screening replayed ids; then fan-outs take mu.
	screening atomic.Bool
	mu        sync.Mutex
	holding   bool
	held      []wire.Message
	replayed  map[string]bool
	until     time.Time // end of the screening of replayed
}

// replaySettle is how long after a recovering join a message read from the history may still
// arrive live: push-route's call to this node (bounded by its node timeout, seconds) plus a window.
const replaySettle = 10 * time.Second

// screen returns what of items goes out to the member now: nothing while it holds (items are kept
// for Release), items less those already replayed to it while it screens.
func (m *member) screen(items []wire.Message) []wire.Message {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.holding {
		m.held = append(m.held, items...)
		return nil
	}
	if time.Now().After(m.until) {
		m.replayed = nil
		m.screening.Store(false)
		return items
	}
	return slices.DeleteFunc(slices.Clone(items), func(it wire.Message) bool { return m.replayed[it.ID] })
}

// Hold is a member whose room messages wait until Release.
type Hold struct{ m *member }

// Release calls write with missed (the messages read from the history) and then those held since
// the join that missed does not already hold, while no new one can go out, then lets the room's
// messages through again, less any of missed that arrive late: whatever write sends comes before them.
func (h *Hold) Release(missed []wire.Message, write func(items []wire.Message)) {
	h.m.mu.Lock()
	defer h.m.mu.Unlock()
	replayed := make(map[string]bool, len(missed))
	for _, m := range missed {
		replayed[m.ID] = true
	}
	items := missed
	for _, m := range h.m.held {
		if !replayed[m.ID] {
			items = append(items, m)
		}
	}
	write(items)
	h.m.held = nil
	h.m.holding = false
	if len(missed) > 0 {
		h.m.replayed, h.m.until = replayed, time.Now().Add(replaySettle)
	} else {
		h.m.screening.Store(false)
	}
}

// New returns an empty table allowing maxPerConn rooms per connection (0: no limit).
func New(maxPerConn int) *Table {
	t := &Table{maxPerConn: maxPerConn, dirty: map[string]struct{}{}, changes: make(chan struct{}, 1)}
	for i := range t.rooms {
		t.rooms[i].rooms = map[string]*room{}
		t.conns[i].rooms = map[*wsconn.Conn][]string{}
	}
	return t
}

func (t *Table) roomShard(name string) *roomShard {
	return &t.rooms[xxhash.Sum64String(name)%shardCount]
}

func (t *Table) connShard(c *wsconn.Conn) *connShard {
	return &t.conns[c.ID%shardCount]
}

// Join puts c into the room; joining a room c is in already does nothing and succeeds. first is true
// when c is the room's first member here: until the room registry names this node, room messages do
// not come here.
func (t *Table) Join(c *wsconn.Conn, name string) (first bool, err error) {
	_, first, err = t.join(c, name, false)
	return first, err
}

// JoinHeld puts c into the room with its messages held until the Hold's Release, for a join that
// recovers what it missed first. A connection in the room already gets a nil Hold: it missed nothing
// since it joined.
func (t *Table) JoinHeld(c *wsconn.Conn, name string) (h *Hold, first bool, err error) {
	m, first, err := t.join(c, name, true)
	if m == nil {
		return nil, false, err
	}
	return &Hold{m}, first, err
}

// join adds c to the room and returns its new member entry (nil when c was in the room already or
// refused), and whether it is the room's first member here.
func (t *Table) join(c *wsconn.Conn, name string, hold bool) (*member, bool, error) {
	cs := t.connShard(c)
	cs.mu.Lock()
	mine := cs.rooms[c]
	if slices.Contains(mine, name) {
		cs.mu.Unlock()
		return nil, false, nil
	}
	if t.maxPerConn > 0 && len(mine) >= t.maxPerConn {
		cs.mu.Unlock()
		return nil, false, ErrTooMany
	}
	cs.rooms[c] = append(mine, name)
	cs.mu.Unlock()

	m := &member{c: c, holding: hold}
	m.screening.Store(hold)
	rs := t.roomShard(name)
	rs.mu.Lock()
	r := rs.rooms[name]
	first := r == nil
	if first {
		r = &room{}
		rs.rooms[name] = r
	}
	var list []*member
	if old := r.members.Load(); old != nil {
		list = append(make([]*member, 0, len(*old)+1), *old...)
	}
	list = append(list, m)
	r.members.Store(&list)
	rs.mu.Unlock()
	t.touch(name)
	if c.Closed() {
		// Closing meanwhile (a server-side join racing the close): LeaveAll may have run before the
		// member was added, and must not leave it behind.
		t.Leave(c, name)
	}
	return m, first, nil
}

// Leave takes c out of the room and reports whether it was in it.
func (t *Table) Leave(c *wsconn.Conn, name string) bool {
	cs := t.connShard(c)
	cs.mu.Lock()
	mine := cs.rooms[c]
	i := slices.Index(mine, name)
	if i < 0 {
		cs.mu.Unlock()
		return false
	}
	if len(mine) == 1 {
		delete(cs.rooms, c)
	} else {
		cs.rooms[c] = slices.Delete(slices.Clone(mine), i, i+1)
	}
	cs.mu.Unlock()
	t.removeMember(c, name)
	return true
}

// LeaveAll takes c out of every room it is in (it closed) and returns them.
func (t *Table) LeaveAll(c *wsconn.Conn) []string {
	cs := t.connShard(c)
	cs.mu.Lock()
	mine := cs.rooms[c]
	delete(cs.rooms, c)
	cs.mu.Unlock()
	for _, name := range mine {
		t.removeMember(c, name)
	}
	return mine
}

func (t *Table) removeMember(c *wsconn.Conn, name string) {
	rs := t.roomShard(name)
	rs.mu.Lock()
	if r := rs.rooms[name]; r != nil {
		old := *r.members.Load()
		if i := slices.IndexFunc(old, func(m *member) bool { return m.c == c }); i >= 0 {
			if len(old) == 1 {
				delete(rs.rooms, name)
			} else {
				list := slices.Delete(slices.Clone(old), i, i+1)
				r.members.Store(&list)
			}
		}
	}
	rs.mu.Unlock()
	t.touch(name)
}

// members returns the room's local members. The slice is shared and never changed: a fan-out may
// walk it without a lock while others join and leave.
func (t *Table) members(name string) []*member {
	rs := t.roomShard(name)
	rs.mu.Lock()
	r := rs.rooms[name]
	rs.mu.Unlock()
	if r == nil {
		return nil
	}
	return *r.members.Load()
}

// Len is how many members the room has here.
func (t *Table) Len(name string) int { return len(t.members(name)) }

func (t *Table) touch(name string) {
	t.dirtyMu.Lock()
	t.dirty[name] = struct{}{}
	t.dirtyMu.Unlock()
	t.signal()
}

func (t *Table) signal() {
	select {
	case t.changes <- struct{}{}:
	default: // a token already waits
	}
}

// Changes receives a value after a room's member count changed (or Retry ran) since Changed was
// last called, at least once for any number of changes.
func (t *Table) Changes() <-chan struct{} { return t.changes }

// Changed returns the rooms whose member count changed since its last call, each with its count now
// (0: no member left here).
func (t *Table) Changed() map[string]int {
	t.dirtyMu.Lock()
	names := t.dirty
	t.dirty = map[string]struct{}{}
	t.dirtyMu.Unlock()
	out := make(map[string]int, len(names))
	for name := range names {
		out[name] = t.Len(name)
	}
	return out
}

// Retry marks rooms as changed again, after writing their counts failed.
func (t *Table) Retry(names map[string]int) {
	t.dirtyMu.Lock()
	for name := range names {
		t.dirty[name] = struct{}{}
	}
	t.dirtyMu.Unlock()
	t.signal()
}

// Counts returns every room with members here and their number.
func (t *Table) Counts() map[string]int {
	out := map[string]int{}
	for i := range t.rooms {
		rs := &t.rooms[i]
		rs.mu.Lock()
		for name, r := range rs.rooms {
			out[name] = len(*r.members.Load())
		}
		rs.mu.Unlock()
	}
	return out
}

// Largest returns the n rooms with the most members here, largest first, and how many rooms and
// memberships there are in all.
func (t *Table) Largest(n int) (top []wire.RoomSize, rooms, members int) {
	for name, k := range t.Counts() {
		rooms++
		members += k
		top = append(top, wire.RoomSize{Room: name, Members: k})
	}
	sort.Slice(top, func(i, j int) bool {
		if top[i].Members != top[j].Members {
			return top[i].Members > top[j].Members
		}
		return top[i].Room < top[j].Room
	})
	if len(top) > n {
		top = top[:max(n, 0)]
	}
	return top, rooms, members
}
