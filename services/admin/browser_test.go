package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"image/png"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/heraldpush/herald/pkg/apikey"
	"github.com/heraldpush/herald/pkg/wire"
)

var updateScreenshots = flag.Bool("update-screenshots", false, "write the browser test's page screenshots into screenshots/ (otherwise into a temporary directory)")

// TestBrowser drives the console as an operator would, in Debian's chromium (headless), against the
// package's real servers, and takes a screenshot of every page on the way.
func TestBrowser(t *testing.T) {
	ctx := newChromium(t)
	shots := t.TempDir()
	if *updateScreenshots {
		shots = "screenshots"
		if err := os.MkdirAll(shots, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	shot := func(name string) {
		t.Helper()
		b, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil {
			t.Fatalf("screenshot %s: %v", name, err)
		}
		img, err := png.Decode(bytes.NewReader(b))
		if err != nil || img.Bounds().Dx() != 1280 {
			t.Fatalf("screenshot %s: %v, bounds %v", name, err, img.Bounds())
		}
		if err := os.WriteFile(filepath.Join(shots, name+".png"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	nodeC, err := startPushServer("ps-c")
	if err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- nodeC.cmd.Wait() }()
	t.Cleanup(func() {
		nodeC.cmd.Process.Kill()
		<-exited
	})

	// Some archived upstream messages, all of the last minute, from three devices.
	now := time.Now()
	senders := []struct{ uid, device string }{{"browser-user", "laptop"}, {"sensor-7", "probe"}, {"kiosk-12", "screen"}}
	for i := range 60 {
		s := senders[i%3]
		_, err := testDB.Exec(`INSERT INTO upstream_messages (id, uid, device, conn_id, node, ts, data, kafka_partition, kafka_offset)
			VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			fmt.Sprintf("01JBROWSER%06d", i), s.uid, s.device, "c-"+s.uid, []string{"ps-a", "ps-b"}[i%2],
			now.Add(-time.Duration(i)*700*time.Millisecond).UnixMilli(),
			fmt.Sprintf(`{"kind":"reading","seq":%d,"temperature":%.1f}`, 60-i, 20+float64(i%7)/2), i%3, i)
		if err != nil {
			t.Fatal(err)
		}
	}

	for _, uid := range []string{"browser-user", "sensor-7", "kiosk-12"} {
		if r := api(t, http.MethodPost, "/api/v1/accounts", map[string]string{"uid": uid}); r.status != http.StatusCreated {
			t.Fatalf("create account %s: %d %s", uid, r.status, r.body)
		}
	}

	t.Run("wrong password is rejected", func(t *testing.T) {
		navigate(t, ctx, "/login")
		fill(t, ctx, `input[name=username]`, adminUser)
		fill(t, ctx, `input[name=password]`, "not the password")
		if status := submit(t, ctx, `main form button[type=submit]`); status != 401 {
			t.Fatalf("status %d", status)
		}
		if msg := text(t, ctx, `.error`); !strings.Contains(msg, "wrong password") {
			t.Fatalf("error %q", msg)
		}
	})
	t.Run("log in", func(t *testing.T) {
		fill(t, ctx, `input[name=password]`, adminPassword)
		if status := submit(t, ctx, `main form button[type=submit]`); status != 200 {
			t.Fatalf("status %d", status)
		}
		if h := text(t, ctx, `h1`); h != "Overview" {
			t.Fatalf("landed on %q", h)
		}
	})

	dev := device(t, nodeA, "browser-user", "laptop")
	device(t, nodeB, "sensor-7", "probe")
	t.Run("overview shows the connected client and the push rate", func(t *testing.T) {
		waitPage(t, ctx, "/", "ps-a counts the device", func() error {
			if got := text(t, ctx, `tr[data-node="ps-a"] td.conns`); got != "1" {
				return fmt.Errorf("ps-a connections %q", got)
			}
			return nil
		})
		// The page refreshes itself (admin.js, every 5 s): a second device shows without a reload.
		second := device(t, nodeA, "browser-user", "tablet")
		eventually(t, "the open page shows the second device", func() error {
			if got := text(t, ctx, `tr[data-node="ps-a"] td.conns`); got != "2" {
				return fmt.Errorf("ps-a connections %q", got)
			}
			return nil
		})
		second.Close()
		eventually(t, "the second device's route gone", func() error {
			if u := decode[userInfo](t, api(t, http.MethodGet, "/api/v1/users/browser-user", nil)); len(u.Connections) != 1 {
				return fmt.Errorf("%d connections", len(u.Connections))
			}
			return nil
		})
		// Pushes in the background until a rate sample has seen them.
		stop := pushLoop(t, dev)
		waitPage(t, ctx, "/", "a push rate", func() error {
			if got := text(t, ctx, `#push-rate`); got == "…" || got == "0.0/s" {
				return fmt.Errorf("push rate %q", got)
			}
			if got := text(t, ctx, `tr[data-node="ps-c"] .state`); got != "live" {
				return fmt.Errorf("ps-c %q", got)
			}
			return nil
		})
		shot("overview")
		stop()
	})
	t.Run("push from the form reaches the client", func(t *testing.T) {
		navigate(t, ctx, "/push?uid=browser-user")
		fill(t, ctx, `textarea[name=data]`, `{text: "no quotes"}`)
		if status := submit(t, ctx, `#push-form button[type=submit]`); status != 400 {
			t.Fatalf("invalid JSON: status %d", status)
		}
		if msg := text(t, ctx, `.error`); !strings.Contains(msg, "not valid JSON") {
			t.Fatalf("error %q", msg)
		}
		fill(t, ctx, `textarea[name=data]`, `{"text":"hello from the console","priority":"high"}`)
		fill(t, ctx, `input[name=ttl_s]`, "3600")
		if status := submit(t, ctx, `#push-form button[type=submit]`); status != 200 {
			t.Fatalf("status %d", status)
		}
		if got := text(t, ctx, `#push-results td.delivered`); got != "1" {
			t.Fatalf("delivered %q", got)
		}
		for {
			// A tick of the overview's background pushes may still be on its way.
			p := nextPush(t, dev)
			if string(p.Data) == `{"text":"tick"}` {
				continue
			}
			if string(p.Data) != `{"text":"hello from the console","priority":"high"}` {
				t.Fatalf("client got %s", p.Data)
			}
			break
		}
		shot("push")
	})
	t.Run("upstream", func(t *testing.T) {
		navigate(t, ctx, "/upstream")
		if n := count(t, ctx, `#upstream tbody tr`); n != pageSize {
			t.Fatalf("%d rows on the first page", n)
		}
		if first := text(t, ctx, `#upstream tbody tr td:nth-child(5)`); !strings.Contains(first, `"seq":60`) {
			t.Fatalf("newest row %q", first)
		}
		shot("upstream")
		if status := submit(t, ctx, `#older`); status != 200 || count(t, ctx, `#upstream tbody tr`) < 10 {
			t.Fatalf("older page: status %d", status)
		}
		navigate(t, ctx, "/upstream?uid=sensor-7")
		if n := count(t, ctx, `#upstream tbody tr`); n != 20 {
			t.Fatalf("%d rows of sensor-7", n)
		}
	})
	t.Run("user lookup and kick", func(t *testing.T) {
		navigate(t, ctx, "/users?uid=browser-user")
		if got := text(t, ctx, `#connections tbody tr`); !strings.Contains(got, "ps-a") || !strings.Contains(got, "laptop") {
			t.Fatalf("connections %q", got)
		}
		if got := text(t, ctx, `#pending tbody tr`); !strings.Contains(got, "hello from the console") {
			t.Fatalf("pending %q", got)
		}
		shot("users")
		// The kick button asks for confirmation; the test accepts every dialog.
		if status := submit(t, ctx, `#kick`); status != 200 {
			t.Fatalf("kick: status %d", status)
		}
		if msg := text(t, ctx, `.notice`); !strings.Contains(msg, "1 connection(s) closed") {
			t.Fatalf("notice %q", msg)
		}
		if code := closedBy(t, dev); code != wire.ClosePolicy {
			t.Fatalf("client closed with %d", code)
		}
	})
	t.Run("accounts", func(t *testing.T) {
		navigate(t, ctx, "/accounts")
		fill(t, ctx, `#create-account input[name=uid]`, "browser-acct")
		fill(t, ctx, `#create-account input[name=password]`, "browser-password")
		if status := submit(t, ctx, `#create-account button[type=submit]`); status != 200 {
			t.Fatalf("create: status %d", status)
		}
		if msg := text(t, ctx, `.notice`); msg != "Account browser-acct created." {
			t.Fatalf("notice %q", msg)
		}
		if status := submit(t, ctx, `tr[data-uid="browser-acct"] form[action$="/disable"] button`); status != 200 {
			t.Fatalf("disable: status %d", status)
		}
		if got := text(t, ctx, `tr[data-uid="browser-acct"] .state`); got != "disabled" {
			t.Fatalf("state %q", got)
		}
		shot("accounts")
	})
	t.Run("a POST without or with a wrong CSRF token is refused", func(t *testing.T) {
		for _, tamper := range []string{
			`document.querySelector('#create-account input[name=csrf]').value = 'forged'`,
			`document.querySelector('#create-account input[name=csrf]').remove()`,
		} {
			navigate(t, ctx, "/accounts")
			fill(t, ctx, `#create-account input[name=uid]`, "csrf-browser")
			if _, err := chromedp.Run(ctx, chromedp.Evaluate[chromedp.Void](tamper)); err != nil {
				t.Fatal(err)
			}
			if status := submit(t, ctx, `#create-account button[type=submit]`); status != 403 {
				t.Fatalf("%s: status %d", tamper, status)
			}
			if h := text(t, ctx, `h1`); h != "Forbidden" {
				t.Fatalf("page %q", h)
			}
		}
		if accountExists(t, "csrf-browser") {
			t.Fatal("the refused form created the account")
		}
	})
	t.Run("create and revoke an API key", func(t *testing.T) {
		navigate(t, ctx, "/keys")
		fill(t, ctx, `#create-key input[name=name]`, "browser-key")
		if status := submit(t, ctx, `#create-key button[type=submit]`); status != 200 {
			t.Fatalf("create: status %d", status)
		}
		key := text(t, ctx, `#new-key`)
		if !strings.HasPrefix(key, apikey.Prefix) {
			t.Fatalf("key %q", key)
		}
		if s := pushRouteStatus(t, key); s != 200 {
			t.Fatalf("push-route with the new key: %d", s)
		}
		shot("keys")
		k, err := apikey.NewStore(testDB).Verify(context.Background(), key)
		if err != nil {
			t.Fatal(err)
		}
		if status := submit(t, ctx, fmt.Sprintf(`tr[data-key="%d"] button.danger`, k.ID)); status != 200 {
			t.Fatalf("revoke: status %d", status)
		}
		if got := text(t, ctx, fmt.Sprintf(`tr[data-key="%d"] .state`, k.ID)); !strings.HasPrefix(got, "revoked") {
			t.Fatalf("state %q", got)
		}
		// push-route runs with -key-cache-ttl 0, so the revocation holds at once.
		if s := pushRouteStatus(t, key); s != 401 {
			t.Fatalf("push-route with the revoked key: %d", s)
		}
	})
	t.Run("drain a node after confirming", func(t *testing.T) {
		device(t, nodeA, "browser-user", "phone")
		waitPage(t, ctx, "/nodes", "three nodes, the device on ps-a", func() error {
			if n := count(t, ctx, `#nodes tbody tr[data-node]`); n != 3 {
				return fmt.Errorf("%d nodes listed", n)
			}
			if got := text(t, ctx, `tr[data-node="ps-a"] td:nth-child(4)`); got != "1" {
				return fmt.Errorf("ps-a connections %q", got)
			}
			return nil
		})
		shot("nodes")
		if status := submit(t, ctx, `tr[data-node="ps-c"] a.danger`); status != 200 {
			t.Fatalf("confirm page: status %d", status)
		}
		fill(t, ctx, `input[name=confirm]`, "ps-a")
		if status := submit(t, ctx, `#drain-form button[type=submit]`); status != 400 {
			t.Fatalf("wrong confirmation: status %d", status)
		}
		shot("drain")
		fill(t, ctx, `input[name=confirm]`, "ps-c")
		if status := submit(t, ctx, `#drain-form button[type=submit]`); status != 202 {
			t.Fatalf("drain: status %d", status)
		}
		if msg := text(t, ctx, `.notice`); !strings.Contains(msg, "ps-c is draining") {
			t.Fatalf("notice %q", msg)
		}
		waitPage(t, ctx, "/nodes", "ps-c listed as draining", func() error {
			if got := text(t, ctx, `tr[data-node="ps-c"] .state`); got != "draining" {
				return fmt.Errorf("ps-c is %q", got)
			}
			return nil
		})
		shot("drained")
		// A drained node stays up: undrain puts it back.
		if status := submit(t, ctx, `tr[data-node="ps-c"] .undrain-form button`); status != 200 {
			t.Fatalf("undrain: status %d", status)
		}
		if msg := text(t, ctx, `.notice`); !strings.Contains(msg, "ps-c takes connections again") {
			t.Fatalf("notice %q", msg)
		}
		waitPage(t, ctx, "/nodes", "ps-c live again", func() error {
			if got := text(t, ctx, `tr[data-node="ps-c"] .state`); got != "live" {
				return fmt.Errorf("ps-c is %q", got)
			}
			return nil
		})
		select {
		case err := <-exited:
			exited <- err // for the cleanup
			t.Fatalf("ps-c exited (%v): a drained node should stay up", err)
		default:
		}
	})
	t.Run("log out", func(t *testing.T) {
		navigate(t, ctx, "/")
		if status := submit(t, ctx, `.logout button`); status != 200 {
			t.Fatalf("status %d", status)
		}
		navigate(t, ctx, "/keys")
		if h := text(t, ctx, `h1`); h != "Log in" {
			t.Fatalf("after logout /keys shows %q", h)
		}
	})
}

// newChromium starts a headless chromium with a fresh profile for the test, and accepts every
// JavaScript dialog (the console's confirmations) it opens.
func newChromium(t *testing.T) context.Context {
	t.Helper()
	path := findChromium(t)
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless,
		chromedp.NoSandbox,
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1280, 900),
	)
	ctx, cancel := chromedp.NewContext(alloc)
	// Cleanups run last-registered first: the browser is gone before its profile directory is removed.
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx, chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatalf("start %s: %v", path, err)
	}
	dialogs := chromedp.Events(ctx, page.JavascriptDialogOpening)
	go func() {
		for _, err := range dialogs {
			if err != nil {
				return
			}
			chromedp.Call(ctx, page.HandleJavaScriptDialog, page.HandleJavaScriptDialogParams{Accept: true})
		}
	}()
	return ctx
}

var installChromium sync.Once

// findChromium returns the browser's path. When there is none it tries to install Debian's chromium
// (scripts/install-deps.sh, as make test does), and skips the test only when that fails too.
func findChromium(t *testing.T) string {
	t.Helper()
	look := func() string {
		for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
			if p, err := exec.LookPath(name); err == nil {
				return p
			}
		}
		return ""
	}
	if p := look(); p != "" {
		return p
	}
	var out []byte
	var err error
	installChromium.Do(func() {
		t.Log("chromium not found; installing it with scripts/install-deps.sh chromium")
		out, err = exec.Command("../../scripts/install-deps.sh", "chromium").CombinedOutput()
	})
	if p := look(); p != "" {
		return p
	}
	t.Skipf("browser tests skipped: chromium is not installed and scripts/install-deps.sh chromium failed (%v): %s", err, out)
	return ""
}

// step bounds one browser action, so a selector that never matches fails the test instead of hanging.
const step = 10 * time.Second

func act[T any](t testing.TB, ctx context.Context, what string, a chromedp.Action[T]) T {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, step)
	defer cancel()
	v, err := chromedp.Run(sctx, a)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	return v
}

// navigate loads the page at path and fails the test unless it answers 200.
func navigate(t testing.TB, ctx context.Context, path string) {
	t.Helper()
	if resp := act(t, ctx, "open "+path, chromedp.NavigateResponse(adminURL+path)); resp.Status != 200 {
		t.Fatalf("open %s: status %d", path, resp.Status)
	}
}

// submit clicks sel and returns the status of the page it leads to.
func submit(t testing.TB, ctx context.Context, sel string) int {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, step)
	defer cancel()
	resp, err := chromedp.RunResponse(sctx, chromedp.Click(chromedp.CSS(sel)))
	if err != nil {
		t.Fatalf("click %s: %v", sel, err)
	}
	return int(resp.Status)
}

func fill(t testing.TB, ctx context.Context, sel, value string) {
	t.Helper()
	act(t, ctx, "fill "+sel, chromedp.SetValue(chromedp.CSS(sel), value))
}

// text reads the text of sel. The overview replaces its rows every 5 s (admin.js), so a node found by
// the query may be gone when its text is read: that is read again, a few times.
func text(t testing.TB, ctx context.Context, sel string) string {
	t.Helper()
	for range 5 {
		sctx, cancel := context.WithTimeout(ctx, step)
		v, err := chromedp.Run(sctx, chromedp.Text(chromedp.CSS(sel)))
		cancel()
		if err == nil {
			return strings.TrimSpace(v)
		}
		if !strings.Contains(err.Error(), "No node with given id") {
			t.Fatalf("read %s: %v", sel, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("read %s: the node kept being replaced", sel)
	return ""
}

func count(t testing.TB, ctx context.Context, sel string) int {
	t.Helper()
	return act(t, ctx, "count "+sel, chromedp.Evaluate[int](fmt.Sprintf("document.querySelectorAll(%q).length", sel)))
}

// waitPage reloads path until check passes.
func waitPage(t testing.TB, ctx context.Context, path, what string, check func() error) {
	t.Helper()
	eventually(t, what, func() error {
		navigate(t, ctx, path)
		return check()
	})
}

// pushLoop pushes to the browser-user ten times a second, and reads what the client receives, until
// the returned stop is called.
func pushLoop(t testing.TB, dev interface{ Pushes() <-chan wire.Push }) (stop func()) {
	done := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-dev.Pushes():
			case <-tick.C:
				req, _ := http.NewRequest(http.MethodPost, adminURL+"/api/v1/push", strings.NewReader(`{"uids":["browser-user"],"data":{"text":"tick"}}`))
				req.SetBasicAuth(adminUser, adminPassword)
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Errorf("background push: %v", err)
					return
				}
				resp.Body.Close()
			}
		}
	})
	return func() {
		close(done)
		wg.Wait()
		for {
			select {
			case <-dev.Pushes():
			case <-time.After(300 * time.Millisecond):
				return
			}
		}
	}
}
