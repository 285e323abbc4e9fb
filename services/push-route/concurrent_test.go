package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/client"
	"github.com/heraldpush/herald/pkg/wire"
)

// TestConcurrentPushesEachReachTheirUsersOnce pushes from many callers at once, so that route lookups
// and deliveries are coalesced into shared Redis pipelines and deliver-batch calls, and checks that
// every answer counts its own users' connections and every device gets exactly its own messages.
func TestConcurrentPushesEachReachTheirUsersOnce(t *testing.T) {
	const users, callers, perCaller = 16, 32, 20
	uids := make([]string, users)
	devices := make([]*client.Conn, users)
	for i := range users {
		uids[i] = uniq(fmt.Sprintf("conc-%d", i))
		node := nodeA
		if i%2 == 1 {
			node = nodeB
		}
		devices[i] = device(t, node, uids[i], "phone")
	}

	var mu sync.Mutex
	want := make([][]string, users) // message ids each user must get
	var wg sync.WaitGroup
	for c := range callers {
		wg.Go(func() {
			for k := range perCaller {
				// Every third call names two users, on different nodes, so one push spans two batches.
				targets := []int{(c*perCaller + k) % users}
				if k%3 == 0 {
					targets = append(targets, (targets[0]+1)%users)
				}
				body := map[string]any{"uids": pick(uids, targets), "data": map[string]int{"c": c, "k": k}}
				b, _ := json.Marshal(body)
				r := post(b)
				if r.err != nil || r.status != http.StatusOK {
					t.Errorf("push: %v HTTP %d %s", r.err, r.status, r.body)
					return
				}
				var resp wire.PushResponse
				if err := json.Unmarshal(r.body, &resp); err != nil || len(resp.Results) != len(targets) {
					t.Errorf("answer %s", r.body)
					return
				}
				for i, res := range resp.Results {
					if res.UID != uids[targets[i]] || res.Delivered != 1 {
						t.Errorf("result %+v for %s, want 1 delivered", res, uids[targets[i]])
					}
				}
				mu.Lock()
				for _, u := range targets {
					want[u] = append(want[u], resp.ID)
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	for u, d := range devices {
		var got []string
		for range want[u] {
			got = append(got, nextPush(t, d).ID)
		}
		noPush(t, d, 100*time.Millisecond)
		slices.Sort(got)
		slices.Sort(want[u])
		if !slices.Equal(got, want[u]) {
			t.Fatalf("%s got %d messages %v, want %d %v", uids[u], len(got), got, len(want[u]), want[u])
		}
	}
}

func pick(uids []string, idx []int) []string {
	out := make([]string, len(idx))
	for i, k := range idx {
		out[i] = uids[k]
	}
	return out
}

type postReply struct {
	status int
	body   []byte
	err    error
}

// post calls POST /v1/push from any goroutine (call and push may stop only the test's own).
func post(body []byte) postReply {
	req, err := http.NewRequest(http.MethodPost, routeURL+"/v1/push", bytes.NewReader(body))
	if err != nil {
		return postReply{err: err}
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return postReply{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return postReply{status: resp.StatusCode, body: b, err: err}
}
