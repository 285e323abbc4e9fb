package testenv

import (
	"testing"
	"time"
)

// EventuallyWithin is how long Eventually keeps trying.
const EventuallyWithin = 20 * time.Second

// Eventually retries check every 50 ms until it returns nil, failing the test with what and the last
// error after EventuallyWithin. Tests of servers use it for anything asynchronous: a route removed, a
// znode gone, a node ready.
func Eventually(t testing.TB, what string, check func() error) {
	t.Helper()
	deadline := time.Now().Add(EventuallyWithin)
	for {
		err := check()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
