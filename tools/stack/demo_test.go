package main

import (
	"context"
	"flag"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/heraldpush/herald/pkg/testenv"
	"github.com/heraldpush/herald/pkg/wire"
)

var updateScreenshot = flag.Bool("update-screenshot", false, "write the demo test's screenshot to demo/screenshot.png (shown in the README)")

// TestDemoInChromium opens the local stack's demo app in Debian's headless chromium: the page logs in
// through auth from its own origin (CORS), connects over WebSocket, receives a push it asks for, gets
// an upstream message acknowledged, reconnects after its connection is dropped, receiving a ttl push
// sent meanwhile, and moves to the other node when its node drains, without losing the ttl push sent
// during the move.
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
		chromedp.Flag("disable-background-networking", true), chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(1100, 900))
	ctx, cancel := chromedp.NewContext(alloc)
	t.Cleanup(func() { cancel(); cancelAlloc() })
	ctx, cancelTimeout := context.WithTimeout(ctx, 90*time.Second)
	defer cancelTimeout()

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
	do("the demo page connects", chromedp.Navigate(st.DemoURL), chromedp.WaitVisible(chromedp.CSS(`#state.open`)))
	if node := text(`#node`); !strings.HasPrefix(node, "ps-") {
		t.Fatalf("connected to node %q", node)
	}

	do("a push reaches the page",
		chromedp.SetValue(chromedp.CSS(`#push-text`), "first push"),
		chromedp.Click(chromedp.CSS(`#push-me`)),
		chromedp.WaitVisible(chromedp.CSS(`#pushes li.push`)))
	if got := text(`#pushes li.push`); !strings.HasPrefix(got, "first push") {
		t.Fatalf("push shown as %q", got)
	}

	do("an upstream message is acknowledged",
		chromedp.Click(chromedp.CSS(`#send-up`)),
		chromedp.WaitVisible(chromedp.CSS(`#ups li.acked`)))
	if got := text(`#ups li.acked`); !strings.Contains(got, "acked as ") {
		t.Fatalf("upstream shown as %q", got)
	}

	// Drop the connection and push with a ttl at once: the page reconnects and gets it, once.
	const arrived = `[...document.querySelectorAll("#pushes li.push")].filter(li => li.textContent.startsWith("while away")).length`
	do("a ttl push sent while the page reconnects arrives",
		chromedp.Click(chromedp.CSS(`#reconnect`)),
		chromedp.SetValue(chromedp.CSS(`#push-text`), "while away"),
		chromedp.Click(chromedp.CSS(`#push-me`)),
		chromedp.Poll[chromedp.Void](arrived+" > 0", chromedp.WithPollingTimeout(30*time.Second)),
		chromedp.WaitVisible(chromedp.CSS(`#state.open`)))
	n, err := chromedp.Run(ctx, chromedp.Evaluate[int](arrived))
	if err != nil || n != 1 {
		t.Fatalf("the push sent while away was shown %d times (%v)", n, err)
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
		chromedp.Click(chromedp.CSS(`#push-me`)),
		chromedp.Poll[chromedp.Void](moved+` > 0 && document.querySelector("#state.open") && document.querySelector("#node").textContent !== `+strconv.Quote(from), chromedp.WithPollingTimeout(30*time.Second)))

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
