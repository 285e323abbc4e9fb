package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
)

// FreePortRange returns a base port such that base … base+n-1 and the same n ports 1000 above are
// free on loopback now: the local stack's layout (public listeners at base+offset, internal ones
// 1000 above), for tests that start a whole stack.
func FreePortRange(t testing.TB, n int) int {
	t.Helper()
	for range 50 {
		base := 20000 + rand.IntN(20000)
		if rangeFree(base, n) {
			return base
		}
	}
	t.Fatal("no free port range")
	return 0
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
