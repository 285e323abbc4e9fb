package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/testenv"
)

// TestFrozenMySQLAnswers503: with MariaDB stopped (SIGSTOP: connections hang, nothing is refused),
// ttl pushes answer 503 unavailable, as the README promises, instead of queueing for the pooled
// connections the frozen server holds. More pushes than the pool has connections are sent at once, and
// none may go unanswered for long: -mysql-timeout (2 s) bounds each one's MySQL work.
func TestFrozenMySQLAnswers503(t *testing.T) {
	// A push first, so the API key is cached and the pushes below reach the message store.
	push(t, map[string]any{"uids": []string{uniq("warm")}, "data": 1, "ttl_s": 60})
	testenv.Freeze(t, env.mysql.PID())

	hc := &http.Client{Timeout: 10 * time.Second}
	var wg sync.WaitGroup
	var mu sync.Mutex
	outcomes := map[string]int{}
	for i := range 100 {
		wg.Go(func() {
			body, _ := json.Marshal(map[string]any{"uids": []string{uniq("frozen")}, "data": i, "ttl_s": 60})
			req, _ := http.NewRequest(http.MethodPost, routeURL+"/v1/push", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+apiKey)
			resp, err := hc.Do(req)
			outcome := "no answer within 10 s"
			if err == nil {
				r := reply{status: resp.StatusCode}
				var buf bytes.Buffer
				buf.ReadFrom(resp.Body)
				resp.Body.Close()
				r.body = buf.Bytes()
				outcome = fmt.Sprintf("%d %s", r.status, r.code())
			}
			mu.Lock()
			outcomes[outcome]++
			mu.Unlock()
		})
	}
	wg.Wait()
	if outcomes["503 unavailable"] != 100 {
		t.Fatalf("outcomes %v, want 100 × 503 unavailable", outcomes)
	}
}
