// Package hub is the push-server's session table: uid → connections (each knowing its device),
// sharded so that connects, disconnects and deliveries of different users rarely share a lock.
package hub

import (
	"sync"
	"sync/atomic"

	"github.com/cespare/xxhash/v2"

	"github.com/heraldpush/herald/services/push-server/internal/wsconn"
)

const shardCount = 64

// Hub holds the connections of this node.
type Hub struct {
	maxPerUser int
	shards     [shardCount]shard
	conns      atomic.Int64
	users      atomic.Int64
}

type shard struct {
	// mu guards users.
	mu sync.RWMutex
	// users maps a uid to its connections, oldest first. A slice, not a map: a user has a handful.
	users map[string][]*wsconn.Conn
}

// New returns an empty hub allowing maxPerUser connections per uid (0: no limit).
func New(maxPerUser int) *Hub {
	h := &Hub{maxPerUser: maxPerUser}
	for i := range h.shards {
		h.shards[i].users = make(map[string][]*wsconn.Conn)
	}
	return h
}

func (h *Hub) shard(uid string) *shard {
	return &h.shards[xxhash.Sum64String(uid)%shardCount]
}

// Add records c. When that puts its user over the limit it returns the oldest connections, already
// removed from the hub, for the caller to close.
func (h *Hub) Add(c *wsconn.Conn) (evicted []*wsconn.Conn) {
	s := h.shard(c.UID)
	s.mu.Lock()
	list := s.users[c.UID]
	if len(list) == 0 {
		h.users.Add(1)
	}
	list = append(list, c)
	if h.maxPerUser > 0 && len(list) > h.maxPerUser {
		n := len(list) - h.maxPerUser
		evicted = append(evicted, list[:n]...)
		list = append(list[:0:0], list[n:]...)
	}
	s.users[c.UID] = list
	s.mu.Unlock()
	h.conns.Add(int64(1 - len(evicted)))
	return evicted
}

// Remove forgets c. It reports whether c was there and whether it was its user's last connection.
func (h *Hub) Remove(c *wsconn.Conn) (removed, last bool) {
	s := h.shard(c.UID)
	s.mu.Lock()
	defer s.mu.Unlock()
	list := s.users[c.UID]
	for i, x := range list {
		if x != c {
			continue
		}
		h.conns.Add(-1)
		if len(list) == 1 {
			delete(s.users, c.UID)
			h.users.Add(-1)
			return true, true
		}
		// A fresh slice: readers may still hold the old one (Conns hands it out without copying).
		rest := make([]*wsconn.Conn, 0, len(list)-1)
		rest = append(append(rest, list[:i]...), list[i+1:]...)
		s.users[c.UID] = rest
		return true, false
	}
	return false, false
}

// Conns returns uid's connections. The slice is shared and must not be modified; it is never changed
// in place, so reading it without the lock is safe.
func (h *Hub) Conns(uid string) []*wsconn.Conn {
	s := h.shard(uid)
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.users[uid]
}

// Has reports whether uid has at least one connection here.
func (h *Hub) Has(uid string) bool { return len(h.Conns(uid)) > 0 }

// Count returns the number of connections and of distinct users.
func (h *Hub) Count() (conns, users int) { return int(h.conns.Load()), int(h.users.Load()) }

// Each calls fn for every connection, visiting the shards in parallel (fn must be safe for concurrent
// use). It returns the number of calls. A shard is snapshotted under its read lock and visited
// without it, so fn may write to sockets without stalling connects.
func (h *Hub) Each(parallel int, fn func(c *wsconn.Conn)) int {
	if parallel <= 0 {
		parallel = 1
	}
	var total atomic.Int64
	next := atomic.Int32{}
	var wg sync.WaitGroup
	for range parallel {
		wg.Go(func() {
			var snap []*wsconn.Conn
			for {
				i := int(next.Add(1)) - 1
				if i >= shardCount {
					return
				}
				snap = h.shards[i].snapshot(snap[:0])
				for _, c := range snap {
					fn(c)
				}
				total.Add(int64(len(snap)))
			}
		})
	}
	wg.Wait()
	return int(total.Load())
}

func (s *shard) snapshot(dst []*wsconn.Conn) []*wsconn.Conn {
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, list := range s.users {
		dst = append(dst, list...)
	}
	return dst
}
