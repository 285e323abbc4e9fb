package testenv

import (
	"fmt"
	"net"
	"net/http"
	"time"
)

// FreeAddr returns a loopback address with a port that was free a moment ago, for a service a test
// starts itself.
func FreeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
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
