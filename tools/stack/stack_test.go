package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/client"
	"github.com/heraldpush/herald/pkg/testenv"
	"github.com/heraldpush/herald/pkg/token"
)

// TestStack runs the local stack as `make run` does and checks what a newcomer would: stack.json,
// the demo login, and a dev-key token for a registered push-server that verifies with the public key.
func TestStack(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the services and starts every server")
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	build := exec.Command("go", "build", "-o", bin+"/", "../../services/auth", "../../services/push-server", "../../services/push-route", "../../services/admin")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build services: %v\n%s", err, out)
	}
	base := testenv.FreePortRange(t, 20)
	authAddr := fmt.Sprintf("127.0.0.1:%d", base+1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, []string{"-dir", dir, "-bin", bin, "-base-port", fmt.Sprint(base), "-log-level", "warn"},
			func(string) string { return "" }, io.Discard)
	}()
	stopped := false
	stop := func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("stack returned %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("stack did not stop within 60s")
		}
	}
	t.Cleanup(stop)

	var st Stack
	deadline := time.Now().Add(90 * time.Second)
	for {
		b, err := os.ReadFile(filepath.Join(dir, "stack.json"))
		if err == nil && json.Unmarshal(b, &st) == nil {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("stack exited: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no stack.json after 90s")
		}
	}
	if st.AuthURL != "http://"+authAddr || st.PushAPIURL == "" || st.AdminURL == "" || st.APIKey == "" || st.MySQLDSN == "" || st.ZooKeeper == "" || st.RedisAddr == "" || len(st.KafkaBrokers) == 0 || st.AdminPassword == "" {
		t.Fatalf("stack.json incomplete: %+v", st)
	}

	if len(st.PushServers) != 2 {
		t.Fatalf("push_servers %+v, want two", st.PushServers)
	}
	// Drain ps-1 so every token names ps-2, and check the stack's nodes answer their internal API.
	req, _ := http.NewRequest(http.MethodPost, st.PushServers[0].InternalURL+"/internal/v1/drain", nil)
	req.Header.Set("X-Herald-Internal-Secret", st.InternalSecret)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != http.StatusAccepted {
		t.Fatalf("drain ps-1: %v %v", resp, err)
	}
	node := st.PushServers[1]

	pubKeys, err := token.LoadPublicKeys(filepath.Join(dir, "keys", "jwt-ed25519.pub.pem"))
	if err != nil {
		t.Fatal(err)
	}
	verifier := token.NewVerifier(pubKeys...)
	check := func(name, path, authz string, body map[string]string, wantUID string) string {
		var resp struct {
			Token  string
			Server struct {
				ID    string `json:"id"`
				WSURL string `json:"ws_url"`
			}
		}
		deadline := time.Now().Add(15 * time.Second)
		for {
			status, b := post(t, st.AuthURL+path, authz, body)
			if status == http.StatusOK {
				if err := json.Unmarshal(b, &resp); err != nil {
					t.Fatal(err)
				}
				if resp.Server.ID == node.ID {
					break // auth has seen ps-1 drain
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %d %s", name, status, b)
			}
			time.Sleep(100 * time.Millisecond)
		}
		claims, err := verifier.Verify(resp.Token)
		if err != nil || claims.UID != wantUID {
			t.Fatalf("%s: token claims %+v, %v", name, claims, err)
		}
		if resp.Server.ID != node.ID || resp.Server.WSURL != node.WSURL {
			t.Fatalf("%s: server %+v, want %+v", name, resp.Server, node)
		}
		return resp.Token
	}
	tok := check("dev key", "/v1/tokens", "Bearer "+st.APIKey, map[string]string{"uid": "user-42", "device": "phone"}, "user-42")

	// The README's walk-through: a device connects with the token, a backend pushes to it.
	dev, err := client.Dial(ctx, client.Config{Token: tok, WSURL: node.WSURL})
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	status, b := post(t, st.PushAPIURL+"/v1/push", "Bearer "+st.APIKey, map[string]any{"uids": []string{"user-42"}, "data": map[string]string{"text": "hello"}})
	if status != http.StatusOK || !strings.Contains(string(b), `"delivered":1`) {
		t.Fatalf("push: %d %s", status, b)
	}
	select {
	case p := <-dev.Pushes():
		if string(p.Data) != `{"text":"hello"}` {
			t.Fatalf("push %+v", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the device got no push")
	}
	// kill -9 of a service: the stack reports it, keeps running, starts it again and names the new
	// process in stack.json.
	old := st.PIDs["push-route"]
	if old == 0 || st.PIDs["redis-server"] == 0 || st.PIDs["stack"] == 0 {
		t.Fatalf("stack.json pids %v lack a process", st.PIDs)
	}
	if err := syscall.Kill(old, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for deadline := time.Now().Add(30 * time.Second); ; {
		var now Stack
		if b, err := os.ReadFile(filepath.Join(dir, "stack.json")); err == nil && json.Unmarshal(b, &now) == nil {
			if pid := now.PIDs["push-route"]; pid != 0 && pid != old {
				if status, _ := post(t, st.PushAPIURL+"/v1/push", "Bearer "+st.APIKey, map[string]any{"uids": []string{"user-42"}, "data": 1}); status == http.StatusOK {
					break
				}
			}
		}
		select {
		case err := <-done:
			t.Fatalf("the stack stopped when push-route died: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("push-route not back within 30s of kill -9")
		}
	}
	check("demo login", "/v1/login", "", map[string]string{"uid": st.DemoUID, "password": st.DemoPassword, "device": "laptop"}, st.DemoUID)

	stop()
	if c, err := net.DialTimeout("tcp", authAddr, time.Second); err == nil {
		c.Close()
		t.Fatal("auth still listening after the stack stopped")
	}
}

func post(t testing.TB, url, authz string, body any) (int, []byte) {
	t.Helper()
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(http.MethodPost, url, bytes.NewReader(b))
	if authz != "" {
		req.Header.Set("Authorization", authz)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, []byte(fmt.Sprint(err))
	}
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// freePortRange finds a base port whose public and internal ranges (base..base+n, +1000) are free.
