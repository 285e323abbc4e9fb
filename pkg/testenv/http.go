package testenv

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"time"
)

// FreeAddr returns a loopback address with a port that was free a moment ago, for a service a test
// starts itself. The port is below the kernel's ephemeral range: one the kernel picked for port 0 and
// that was closed again is soon handed to another test's outgoing connection, and the service then
// fails to bind.
func FreeAddr() (string, error) {
	hi := ephemeralLow() - 1000
	for range 50 {
		addr := fmt.Sprintf("127.0.0.1:%d", 10000+rand.IntN(hi-10000))
		if ln, err := net.Listen("tcp", addr); err == nil {
			ln.Close()
			return addr, nil
		}
	}
	return "", errors.New("no free port below the ephemeral range")
}

// WaitHTTP polls url until it answers 200 (a service's /healthz or /readyz), for at most within.
func WaitHTTP(url string, within time.Duration) error {
	deadline := time.Now().Add(within)
	for {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			err = fmt.Errorf("HTTP %d", resp.StatusCode)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %v", url, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
