// Package ring is the consistent-hash ring auth uses to choose a push-server
// for a uid, so that all devices of one user meet on one node.
//
// A Ring is immutable: membership changes build a new one, and readers keep
// using whichever Ring they loaded without locks. Each member owns
// weight × vnodes points on a 64-bit circle; a key belongs to the first point
// at or after its hash. Because a member's points depend only on its ID and
// weight, adding a member takes keys only for itself, removing one hands out
// only its own keys, and raising a weight only adds points.
package ring

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/cespare/xxhash/v2"
)

// DefaultVNodes is the number of points per unit of weight used by New.
//
// A member's share varies by roughly 1/sqrt(points), so ten members need about
// a thousand points each before the busiest stays within ±10 % of the mean
// whatever the node IDs look like; 2048 keeps it nearer ±6 % while a 50-member
// ring still builds in a few milliseconds.
const DefaultVNodes = 2048

// ownerBits is how much of each point is spent on its owner's index. Packing
// the owner into the point keeps the ring one sorted []uint64: it sorts faster
// than a slice of structs and Get reads a single array. The 40 bits left for
// the position are ample for placement, and equal positions are broken by owner,
// that is by ID, so ties stay deterministic.
const (
	ownerBits = 24
	ownerMask = 1<<ownerBits - 1
	// MaxMembers is the most members a Ring can hold.
	MaxMembers = 1 << ownerBits
)

// Member is one node that can own keys.
type Member struct {
	ID string
	// Weight scales the member's share of keys; a value <= 0 counts as 1 so a
	// node that forgot to announce a weight still takes traffic. Build time and
	// memory grow with the sum of weights, so use small relative capacities.
	Weight int
}

// Ring maps keys to member IDs. The zero value and a nil *Ring are empty rings.
// A Ring is safe for concurrent use because it never changes after New.
type Ring struct {
	points []uint64 // sorted; position in the high bits, index into ids in the low ownerBits
	ids    []string // sorted
}

// New builds a ring with DefaultVNodes points per unit of weight.
//
// Members with an empty ID are ignored. If an ID appears more than once, the
// largest weight given for it is used, so the result never depends on the
// order of members. New panics if there are more than MaxMembers distinct IDs.
func New(members []Member) *Ring {
	return NewWithVNodes(members, DefaultVNodes)
}

// NewWithVNodes is New with an explicit number of points per unit of weight;
// vnodes <= 0 means DefaultVNodes. Rings that must agree with each other (say,
// two auth replicas) must use the same value.
func NewWithVNodes(members []Member, vnodes int) *Ring {
	if vnodes <= 0 {
		vnodes = DefaultVNodes
	}

	weights := make(map[string]int, len(members))
	for _, m := range members {
		if m.ID == "" {
			continue
		}
		w := max(m.Weight, 1)
		if w > weights[m.ID] {
			weights[m.ID] = w
		}
	}
	if len(weights) > MaxMembers {
		panic(fmt.Sprintf("ring: %d members, at most %d supported", len(weights), MaxMembers))
	}
	r := &Ring{ids: make([]string, 0, len(weights))}
	total := 0
	for id, w := range weights {
		r.ids = append(r.ids, id)
		total += w * vnodes
	}
	// Sorting the IDs makes owner indexes, and with them the tie-break between
	// equal positions, independent of the caller's order.
	slices.Sort(r.ids)

	r.points = make([]uint64, 0, total)
	var buf []byte
	for i, id := range r.ids {
		buf = append(buf[:0], id...)
		buf = append(buf, '#')
		prefix := len(buf)
		for v := range weights[id] * vnodes {
			buf = strconv.AppendInt(buf[:prefix], int64(v), 10)
			r.points = append(r.points, xxhash.Sum64(buf)&^ownerMask|uint64(i))
		}
	}
	slices.Sort(r.points)
	return r
}

// Get returns the member that owns key, and false only when the ring is empty.
// It does not allocate, since auth calls it on every login.
func (r *Ring) Get(key string) (id string, ok bool) {
	if r == nil || len(r.points) == 0 {
		return "", false
	}
	// Clearing the owner bits finds the first point whose position is at or
	// after the key's, whoever owns it.
	i, _ := slices.BinarySearch(r.points, xxhash.Sum64String(key)&^ownerMask)
	if i == len(r.points) {
		i = 0 // past the last point the circle wraps to the first
	}
	return r.ids[r.points[i]&ownerMask], true
}

// GetSkipping returns the member that owns key once skip is left out: the next member clockwise when
// skip owns it, the owner otherwise. It is for a client that reports skip just failed it, so that it
// lands on the node that would take its users if skip were gone, and nobody else moves. With skip the
// only member, it returns skip.
func (r *Ring) GetSkipping(key, skip string) (id string, ok bool) {
	if r == nil || len(r.points) == 0 {
		return "", false
	}
	i, _ := slices.BinarySearch(r.points, xxhash.Sum64String(key)&^ownerMask)
	for range len(r.points) {
		if i == len(r.points) {
			i = 0
		}
		if id := r.ids[r.points[i]&ownerMask]; id != skip {
			return id, true
		}
		i++
	}
	return skip, true
}

// Len returns the number of members.
func (r *Ring) Len() int {
	if r == nil {
		return 0
	}
	return len(r.ids)
}
