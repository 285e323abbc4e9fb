package service

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestServeShutsDownBothServers runs a net/http listener and a lean one, ends the context while a
// call is in flight on each, and expects both calls answered and Serve to return cleanly.
func TestServeShutsDownBothServers(t *testing.T) {
	entered, release := make(chan struct{}, 2), make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		<-release
		io.WriteString(w, "answered")
	})
	var lns [2]net.Listener
	for i := range lns {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		lns[i] = ln
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	served := make(chan error, 1)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	go func() {
		served <- Serve(ctx, logger, 5*time.Second,
			Listener{Name: "std", Listener: lns[0], Handler: slow},
			Listener{Name: "lean", Listener: lns[1], Handler: slow, Lean: true})
	}()
	answers := make(chan string, 2)
	for _, ln := range lns {
		go func() {
			resp, err := http.Get("http://" + ln.Addr().String() + "/")
			if err != nil {
				answers <- err.Error()
				return
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			answers <- string(b)
		}()
	}
	<-entered
	<-entered
	cancel()
	time.Sleep(50 * time.Millisecond) // Serve is shutting down, the calls still in flight
	close(release)
	for range 2 {
		if got := <-answers; got != "answered" {
			t.Errorf("call in flight at shutdown got %q", got)
		}
	}
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}
