package main

import (
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"time"
)

// The plan: which process opens which connection, from which source address, to which push-server,
// as which user. Everything here is pure so it can be tested without a network.

// share is one worker process's slice of the connections: global indices [First, First+Count).
type share struct {
	First int `json:"first"`
	Count int `json:"count"`
}

// splitEven cuts n connections into parts contiguous shares whose sizes differ by at most one.
func splitEven(n, parts int) []share {
	if parts <= 0 {
		return nil
	}
	out := make([]share, parts)
	first := 0
	for i := range out {
		c := n / parts
		if i < n%parts {
			c++
		}
		out[i] = share{First: first, Count: c}
		first += c
	}
	return out
}

// autoProcs is how many worker processes hold conns connections at most maxPerProc each.
func autoProcs(conns, maxPerProc int) int {
	if maxPerProc <= 0 {
		return 1
	}
	return max(1, (conns+maxPerProc-1)/maxPerProc)
}

// sourceAddrs returns k consecutive IPv4 addresses starting at base (127.0.0.2, 127.0.0.3, …). Every
// 127/8 address is local on Linux, so connections from them need no interface setup, and each brings
// its own ephemeral port range.
func sourceAddrs(base string, k int) ([]netip.Addr, error) {
	a, err := netip.ParseAddr(base)
	if err != nil {
		return nil, fmt.Errorf("source address %q: %w", base, err)
	}
	if !a.Is4() {
		return nil, fmt.Errorf("source address %q: want IPv4", base)
	}
	if k < 1 {
		return nil, fmt.Errorf("need at least one source address, got %d", k)
	}
	out := make([]netip.Addr, 0, k)
	for range k {
		if !a.IsValid() {
			return nil, fmt.Errorf("%d source addresses from %s run past the end of the address space", k, base)
		}
		out = append(out, a)
		a = a.Next()
	}
	if first, last := out[0], out[len(out)-1]; first.IsLoopback() != last.IsLoopback() {
		return nil, fmt.Errorf("source addresses %s–%s leave the loopback range", first, last)
	}
	return out, nil
}

// limits are the machine's constraints a plan must respect.
type limits struct {
	// filesPerProc is how many descriptors one process may open (RLIMIT_NOFILE).
	filesPerProc int
	// portsPerSource is the size of the ephemeral port range: each source address can be bound to
	// at most this many sockets at once.
	portsPerSource int
}

// spareFiles is what a worker needs besides its WebSocket connections: stdio, the runtime's epoll
// and pipes, HTTP connections to auth.
const spareFiles = 200

// check reports why conns connections over procs processes and sources source addresses cannot work
// within lim.
func check(conns, procs, sources int, lim limits) error {
	switch {
	case conns < 1:
		return fmt.Errorf("-conns must be at least 1")
	case procs < 1:
		return fmt.Errorf("-procs must be at least 1")
	case sources < 1:
		return fmt.Errorf("-sources must be at least 1")
	}
	perProc := (conns + procs - 1) / procs
	if lim.filesPerProc > 0 && perProc+spareFiles > lim.filesPerProc {
		return fmt.Errorf("%d connections per process (+%d spare) exceed the %d files one process may open: use more -procs",
			perProc, spareFiles, lim.filesPerProc)
	}
	perSource := (conns + sources - 1) / sources
	if lim.portsPerSource > 0 && perSource > lim.portsPerSource {
		return fmt.Errorf("%d connections per source address exceed its %d ephemeral ports: use more -sources",
			perSource, lim.portsPerSource)
	}
	return nil
}

// identity is who connection i is: with uids distinct users, connections i, i+uids, i+2·uids, …
// are devices of the same user.
func identity(prefix string, i, uids int) (uid, device string) {
	if uids <= 0 {
		uids = i + 1
	}
	return prefix + "-" + strconv.Itoa(i%uids), "d" + strconv.Itoa(i/uids)
}

// pick chooses the element for connection i among n, round-robin.
func pick(i, n int) int { return i % n }

// parseOffsets reads a comma-separated list of durations ("10s,15s") and returns them sorted.
func parseOffsets(s string) ([]time.Duration, error) {
	var out []time.Duration
	for _, f := range strings.Split(s, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		d, err := time.ParseDuration(f)
		if err != nil {
			return nil, fmt.Errorf("sample time %q: %w", f, err)
		}
		if d < 0 {
			return nil, fmt.Errorf("sample time %q: negative", f)
		}
		out = append(out, d)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("no sample times in %q", s)
	}
	sort.Slice(out, func(a, b int) bool { return out[a] < out[b] })
	return out, nil
}

// percentile returns the q-th quantile (0 ≤ q ≤ 1) of sorted by the nearest-rank method; 0 when empty.
func percentile(sorted []int64, q float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(q*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(rank, 0), len(sorted)-1)]
}

// perConn divides a growth in bytes over the connections that caused it; 0 when there were none.
func perConn(before, after uint64, conns int) float64 {
	if conns <= 0 {
		return 0
	}
	return (float64(after) - float64(before)) / float64(conns)
}

// addCounts adds the counts of src into dst, allocating dst when needed.
func addCounts(dst map[string]int, src map[string]int) map[string]int {
	if len(src) == 0 {
		return dst
	}
	if dst == nil {
		dst = map[string]int{}
	}
	for k, v := range src {
		dst[k] += v
	}
	return dst
}

// formatCounts renders failure counts as "kind n, kind n" in a stable order, or "none".
func formatCounts(m map[string]int) string {
	if len(m) == 0 {
		return "none"
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %d", k, m[k])
	}
	return strings.Join(parts, ", ")
}
