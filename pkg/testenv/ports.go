package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"testing"
)

// FreePortRange returns a base port such that base … base+n-1 and the same n ports 1000 above are
// free on loopback now: the local stack's layout (public listeners at base+offset, internal ones
// 1000 above), for tests that start a whole stack.
func FreePortRange(t testing.TB, n int) int {
	t.Helper()
	// Below the kernel's ephemeral range: the servers a stack starts take ports the kernel picks from
	// that range, and one of them landed in the stack's own layout between this check and its use.
	hi := ephemeralLow() - 1000 - n
	for range 50 {
		base := 10000 + rand.IntN(hi-10000)
		if rangeFree(base, n) {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
}

// ephemeralLow is the first port the kernel hands out for port 0 (Linux's default when unreadable).
func ephemeralLow() int {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return 32768
	}
	var low, high int
	if _, err := fmt.Sscan(string(b), &low, &high); err != nil || low < 12000 {
		return 32768
	}
	return low
}

func rangeFree(base, n int) bool {
	for p := base; p < base+n; p++ {
		for _, port := range []int{p, p + 1000} {
			ln, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
			if err != nil {
				return false
			}
			ln.Close()
		}
	}
	return true
}
