package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"

	"github.com/heraldpush/herald/pkg/testenv"
	"github.com/heraldpush/herald/pkg/wire"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write the demo test's screenshot to demo/screenshot.png (shown in the README)")

// TestDemoInChromium opens the local stack's demo app in Debian's headless chromium, once per transport
// (WebSocket, server-sent events, long-poll): the page logs in through auth from its own origin
// (CORS), connects, receives a push it asks for and acks it, gets an upstream message acknowledged,
// reconnects after its connection is dropped, receiving a ttl push sent meanwhile, and moves to the
// other node when its node drains, without losing the ttl push sent during the move. A page of
// another origin may neither log in nor open a session.
func TestDemoInChromium(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the stack and a browser")
	}
	path, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatal("chromium is not installed: scripts/install-deps.sh chromium installs it (make test does)")
	}
	st := startStack(t, testenv.FreePortRange(t, 20)).st
	if st.DemoURL == "" {
		t.Fatal("stack.json has no demo_url")
	}
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-background-networking", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1100, 1350))
	browser, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(browser); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	for _, transport := range []string{"websocket", "sse", "poll"} {
		t.Run(transport, func(t *testing.T) {
			tab, closeTab := chromedp.NewContext(browser)
			defer closeTab()
			ctx, cancelTimeout := context.WithTimeout(tab, 90*time.Second)
			defer cancelTimeout()
			demoTransport(t, ctx, st, transport)
		})
	}
	t.Run("fallback", func(t *testing.T) {
		tab, closeTab := chromedp.NewContext(browser)
		defer closeTab()
		ctx, cancelTimeout := context.WithTimeout(tab, 60*time.Second)
		defer cancelTimeout()
		// A network that breaks WebSocket: every socket fails before it opens, as behind a proxy that
		// drops the upgrade. The client says so and moves on to server-sent events.
		breakWS := chromedp.Action[chromedp.Void](func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
			_, err := cdp.Call(ctx, tg, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `
				window.WebSocket = class { constructor() { this.readyState = 0; setTimeout(() => this.onclose && this.onclose({code: 1006, reason: ""}), 20); } send() {} close() {} };
				window.WebSocket.OPEN = 1;`})
			return chromedp.Void{}, err
		})
		if err := chromedp.Do(ctx, breakWS, chromedp.Navigate(st.DemoURL), chromedp.WaitVisible(chromedp.CSS(`#state.open[data-transport="sse"]`))); err != nil {
			t.Fatalf("the page did not fall back to sse: %v", err)
		}
		why, err := chromedp.Run(ctx, chromedp.Evaluate[string](`window.fellBack || ""`))
		if err != nil || !strings.Contains(why, "websocket failed before its welcome") {
			t.Fatalf("the fallback's reason %q (%v)", why, err)
		}
	})
	t.Run("other origin refused", func(t *testing.T) {
		tab, closeTab := chromedp.NewContext(browser)
		defer closeTab()
		ctx, cancelTimeout := context.WithTimeout(tab, 30*time.Second)
		defer cancelTimeout()
		// The admin console is another origin than the demo app's, the only one the stack allows.
		psHTTP := strings.TrimSuffix(strings.Replace(st.PushServers[0].WSURL, "ws://", "http://", 1), "/ws")
		script := `(async () => {
			const tried = async (url, init) => { try { await fetch(url, init); return "answered"; } catch { return "blocked"; } };
			return [
				await tried(` + strconv.Quote(st.AuthURL+"/v1/login") + `, {method: "POST", headers: {"Content-Type": "application/json"}, body: "{}"}),
				await tried(` + strconv.Quote(psHTTP+"/poll?token=x") + `),
			].join(",");
		})()`
		if err := chromedp.Do(ctx, chromedp.Navigate(st.AdminURL)); err != nil {
			t.Fatal(err)
		}
		got, err := chromedp.Run(ctx, chromedp.Evaluate[string](script, chromedp.EvalAwaitPromise))
		if err != nil {
			t.Fatal(err)
		}
		if got != "blocked,blocked" {
			t.Fatalf("login, poll from %s: %s; want both blocked", st.AdminURL, got)
		}
	})
}

// demoTransport runs the demo page's checks with the page held to one transport.
func demoTransport(t *testing.T, ctx context.Context, st Stack, transport string) {
	text := func(sel string) string {
		t.Helper()
		s, err := chromedp.Run(ctx, chromedp.Text(chromedp.CSS(sel)))
		if err != nil {
			t.Fatalf("text of %s: %v", sel, err)
		}
		return strings.TrimSpace(s)
	}
	do := func(what string, steps ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, steps...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	open := chromedp.CSS(`#state.open[data-transport="` + transport + `"]`)
	do("the demo page connects", chromedp.Navigate(st.DemoURL+"?transport="+transport), chromedp.WaitVisible(open))
	if node := text(`#node`); !strings.HasPrefix(node, "ps-") {
		t.Fatalf("connected to node %q", node)
	}

	acked := acksAt(t, st)
	do("a push reaches the page",
		chromedp.SetValue(chromedp.CSS(`#push-text`), "first push"),
		press(`#push-me`),
		chromedp.WaitVisible(chromedp.CSS(`#pushes li.push`)))
	if got := text(`#pushes li.push`); !strings.HasPrefix(got, "first push") {
		t.Fatalf("push shown as %q", got)
	}
	testenv.Eventually(t, "the page's ack at its push-server", func() error {
		if n := acksAt(t, st); n <= acked {
			return fmt.Errorf("herald_ws_acks_total %v, was %v", n, acked)
		}
		return nil
	})

	do("a line said in the room reaches the page",
		chromedp.WaitVisible(chromedp.CSS(`#room-state.joined`)),
		chromedp.SetValue(chromedp.CSS(`#chat-text`), "room line one"),
		press(`#say`),
		chromedp.WaitVisible(chromedp.CSS(`#chat li.said`)))

	do("an upstream message is acknowledged",
		press(`#send-up`),
		chromedp.WaitVisible(chromedp.CSS(`#ups li.acked`)))
	if got := text(`#ups li.acked`); !strings.Contains(got, "acked as ") {
		t.Fatalf("upstream shown as %q", got)
	}

	// Drop the connection, then push with a ttl and say a line in the room at once: the page
	// reconnects and gets both, once each (the line from the room's history).
	const arrived = `[...document.querySelectorAll("#pushes li.push")].filter(li => li.textContent.startsWith("while away")).length`
	const said = `[...document.querySelectorAll("#chat li.said")].filter(li => li.textContent.startsWith("said while away")).length`
	do("a ttl push and a room line sent while the page reconnects arrive",
		press(`#reconnect`),
		chromedp.SetValue(chromedp.CSS(`#push-text`), "while away"),
		press(`#push-me`),
		chromedp.SetValue(chromedp.CSS(`#chat-text`), "said while away"),
		press(`#say`),
		chromedp.Poll[chromedp.Void](arrived+" > 0 && "+said+" > 0", chromedp.WithPollingTimeout(30*time.Second)),
		chromedp.WaitVisible(open))
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](arrived+" * 10 + "+said))
	if err != nil || n != 11 {
		t.Fatalf("the push and the room line sent while away were shown %d and %d times (%v)", n/10, n%10, err)
	}
	// Drain the page's node: the client logs in again and lands on the other node, and a ttl push sent
	// while it moves reaches it.
	from := text(`#node`)
	var drained PushServer
	for _, ps := range st.PushServers {
		if ps.ID == from {
			drained = ps
		}
	}
	nodeCall := func(path string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, drained.InternalURL+path, nil)
		req.Header.Set(wire.SecretHeader, st.InternalSecret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode/100 != 2 {
			t.Fatalf("POST %s on %s: %v %v", path, drained.ID, resp, err)
		}
		resp.Body.Close()
	}
	nodeCall(wire.PathDrain)
	defer nodeCall(wire.PathUndrain)
	const moved = `[...document.querySelectorAll("#pushes li.push")].filter(li => li.textContent.startsWith("during the drain")).length`
	do("the page moves to the other node and gets the push sent meanwhile",
		chromedp.SetValue(chromedp.CSS(`#push-text`), "during the drain"),
		press(`#push-me`),
		chromedp.Poll[chromedp.Void](moved+` > 0 && document.querySelector(`+strconv.Quote(`#state.open[data-transport="`+transport+`"]`)+`) && document.querySelector("#node").textContent !== `+strconv.Quote(from), chromedp.WithPollingTimeout(30*time.Second)))

	if transport != "websocket" {
		return
	}
	if _, err := chromedp.Run(ctx, chromedp.Evaluate[any](`window.scrollTo(0, 0)`)); err != nil {
		t.Fatal(err)
	}
	b, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
	if err != nil || len(b) == 0 {
		t.Fatalf("screenshot: %v", err)
	}
	if *updateScreenshot {
		if err := os.WriteFile(filepath.Join("demo", "screenshot.png"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// acksAt sums herald_ws_acks_total over the stack's push-servers.
func acksAt(t *testing.T, st Stack) float64 {
	t.Helper()
	var sum float64
	for _, ps := range st.PushServers {
		resp, err := http.Get(ps.InternalURL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "herald_ws_acks_total "); ok {
				f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
				sum += f
			}
		}
	}
	return sum
}

// press clicks the button sel through the DOM. A click by coordinates can land beside it: the page's
// status line and lists change while it reconnects, and the button may move between the moment its
// position is read and the click.
func press(sel string) chromedp.Action[chromedp.Void] {
	return func(ctx context.Context, tg *chromedp.Target) (chromedp.Void, error) {
		_, err := chromedp.Evaluate[any](`document.querySelector(`+strconv.Quote(sel)+`).click()`)(ctx, tg)
		return chromedp.Void{}, err
	}
}
