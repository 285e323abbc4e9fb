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

	"github.com/cespare/xxhash/v2"

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
	members atomic.Pointer[[]*wsconn.Conn]
}

// New returns an empty table allowing maxPerConn rooms per connection (0: no limit).
func New(maxPerConn int) *Table {
	t := &Table{maxPerConn: maxPerConn, dirty: map[string]struct{}{}}
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

// Join puts c into the room; joining a room c is in already does nothing and succeeds.
func (t *Table) Join(c *wsconn.Conn, name string) error {
	cs := t.connShard(c)
	cs.mu.Lock()
	mine := cs.rooms[c]
	if slices.Contains(mine, name) {
		cs.mu.Unlock()
		return nil
	}
	if t.maxPerConn > 0 && len(mine) >= t.maxPerConn {
		cs.mu.Unlock()
		return ErrTooMany
	}
	cs.rooms[c] = append(mine, name)
	cs.mu.Unlock()

	rs := t.roomShard(name)
	rs.mu.Lock()
	r := rs.rooms[name]
	if r == nil {
		r = &room{}
		rs.rooms[name] = r
	}
	var list []*wsconn.Conn
	if old := r.members.Load(); old != nil {
		list = append(make([]*wsconn.Conn, 0, len(*old)+1), *old...)
	}
	list = append(list, c)
	r.members.Store(&list)
	rs.mu.Unlock()
	t.touch(name)
	if c.Closed() {
		// Closing meanwhile (a server-side join racing the close): LeaveAll may have run before the
		// member was added, and must not leave it behind.
		t.Leave(c, name)
	}
	return nil
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
		if i := slices.Index(old, c); i >= 0 {
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

// Members returns the room's local members. The slice is shared and never changed: a fan-out may
// walk it without a lock while others join and leave.
func (t *Table) Members(name string) []*wsconn.Conn {
	rs := t.roomShard(name)
	rs.mu.Lock()
	r := rs.rooms[name]
	rs.mu.Unlock()
	if r == nil {
		return nil
	}
	return *r.members.Load()
}

// RoomsOf returns the rooms c is in.
func (t *Table) RoomsOf(c *wsconn.Conn) []string {
	cs := t.connShard(c)
	cs.mu.Lock()
	defer cs.mu.Unlock()
	return slices.Clone(cs.rooms[c])
}

func (t *Table) touch(name string) {
	t.dirtyMu.Lock()
	t.dirty[name] = struct{}{}
	t.dirtyMu.Unlock()
}

// Changed returns the rooms whose member count changed since its last call, each with its count now
// (0: no member left here).
func (t *Table) Changed() map[string]int {
	t.dirtyMu.Lock()
	names := t.dirty
	t.dirty = map[string]struct{}{}
	t.dirtyMu.Unlock()
	out := make(map[string]int, len(names))
	for name := range names {
		out[name] = len(t.Members(name))
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

// Size is one room and its members here.
type Size struct {
	Room    string `json:"room"`
	Members int    `json:"members"`
}

// Largest returns the n rooms with the most members here, largest first, and how many rooms and
// memberships there are in all.
func (t *Table) Largest(n int) (top []Size, rooms, members int) {
	for name, k := range t.Counts() {
		rooms++
		members += k
		top = append(top, Size{name, k})
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
