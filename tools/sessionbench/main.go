// Command sessionbench measures what an idle session costs a push-server on each transport: it opens
// -conns sessions of one kind (WebSocket, SSE stream, or long-poll session with its poll waiting) on
// one node of the local stack, holds them, and reads the node's RSS, heap and goroutines before and
// after, from its internal stats. Sessions of one node from one process: the generator's own memory
// is not what is measured.
//
//	go run ./tools/sessionbench -transport sse -conns 18000
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gobwas/ws"
	"github.com/gobwas/ws/wsutil"

	"github.com/heraldpush/herald/pkg/apiclient"
	"github.com/heraldpush/herald/pkg/client"
	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/tools/internal/stackfile"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "sessionbench:", err)
		os.Exit(1)
	}
}

type options struct {
	stack     string
	transport string
	conns     int
	node      string
	settle    time.Duration
	parallel  int
}

func run(args []string) error {
	var o options
	fs := flag.NewFlagSet("sessionbench", flag.ContinueOnError)
	fs.StringVar(&o.stack, "stack", ".herald/stack.json", "the local stack's description")
	fs.StringVar(&o.transport, "transport", "sse", "websocket, sse or poll")
	fs.IntVar(&o.conns, "conns", 18000, "sessions to open (one process holds at most about 19,000 descriptors)")
	fs.StringVar(&o.node, "node", "", "push-server id to open them on (default: the stack's first)")
	fs.DurationVar(&o.settle, "settle", 10*time.Second, "wait after the last session opened before reading the node's stats")
	fs.IntVar(&o.parallel, "parallel", 64, "sessions being opened at once")
	if err := fs.Parse(args); err != nil {
		return err
	}
	st, err := stackfile.Read(o.stack)
	if err != nil {
		return err
	}
	if len(st.PushServers) == 0 {
		return errors.New("the stack has no push-servers")
	}
	ps := st.PushServers[0]
	for _, p := range st.PushServers {
		if p.ID == o.node {
			ps = p
		}
	}
	var open func(ctx context.Context, token string) error
	base := strings.TrimSuffix(strings.Replace(ps.WSURL, "ws://", "http://", 1), "/ws")
	switch o.transport {
	case "websocket":
		open = func(ctx context.Context, token string) error { return openWebSocket(ctx, ps.WSURL, token) }
	case "sse":
		open = func(ctx context.Context, token string) error { return openSSE(ctx, base, token) }
	case "poll":
		open = func(ctx context.Context, token string) error { return openPoll(ctx, base, token) }
	default:
		return fmt.Errorf("-transport %q: websocket, sse or poll", o.transport)
	}

	ctx := context.Background()
	hc := &http.Client{Timeout: 10 * time.Second}
	nodes := apiclient.NewNodeClient(hc, st.InternalSecret)
	before, err := nodes.Stats(ctx, ps.InternalURL)
	if err != nil {
		return err
	}
	fmt.Printf("%s: %d sessions on %s (%d connections there before)\n", o.transport, o.conns, ps.ID, before.Connections)

	start := time.Now()
	var opened, failed atomic.Int64
	var firstErr atomic.Value
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range o.parallel {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if i >= int64(o.conns) {
					return
				}
				sess, err := client.MintTokenWith(ctx, hc, st.AuthURL, st.APIKey, fmt.Sprintf("sb-%s-%d", o.transport, i), "bench")
				if err == nil {
					err = open(ctx, sess.Token)
				}
				if err != nil {
					failed.Add(1)
					firstErr.CompareAndSwap(nil, err)
					continue
				}
				opened.Add(1)
			}
		})
	}
	wg.Wait()
	fmt.Printf("opened %d (%d failed) in %v\n", opened.Load(), failed.Load(), time.Since(start).Round(time.Millisecond))
	if err, ok := firstErr.Load().(error); ok {
		fmt.Printf("first failure: %v\n", err)
	}
	time.Sleep(o.settle)
	after, err := nodes.Stats(ctx, ps.InternalURL)
	if err != nil {
		return err
	}
	n := float64(after.Connections - before.Connections)
	if n <= 0 {
		return fmt.Errorf("the node holds %d connections more than before", after.Connections-before.Connections)
	}
	fmt.Printf("node %s: +%d connections; RSS +%.1f MiB = %.0f B each; heap +%.1f MiB = %.0f B each; goroutines %d → %d\n",
		ps.ID, after.Connections-before.Connections,
		float64(after.RSSBytes-before.RSSBytes)/(1<<20), float64(after.RSSBytes-before.RSSBytes)/n,
		(float64(after.HeapBytes)-float64(before.HeapBytes))/(1<<20), (float64(after.HeapBytes)-float64(before.HeapBytes))/n,
		before.Goroutines, after.Goroutines)
	return nil
}

func openWebSocket(ctx context.Context, wsURL, token string) error {
	conn, br, _, err := ws.Dial(ctx, wsURL+"?token="+url.QueryEscape(token))
	if err != nil {
		return err
	}
	r := io.Reader(conn)
	if br != nil {
		r = io.MultiReader(br, conn)
	}
	if _, _, err := wsutil.ReadServerData(struct {
		io.Reader
		io.Writer
	}{r, conn}); err != nil {
		conn.Close()
		return fmt.Errorf("welcome: %w", err)
	}
	go io.Copy(io.Discard, conn) // held until the process exits
	return nil
}

func openSSE(ctx context.Context, base, token string) error {
	u, _ := url.Parse(base)
	conn, err := (&net.Dialer{Timeout: 10 * time.Second}).DialContext(ctx, "tcp", u.Host)
	if err != nil {
		return err
	}
	fmt.Fprintf(conn, "GET /sse?token=%s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n", url.QueryEscape(token), u.Host)
	br := bufio.NewReaderSize(conn, 1024)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 200 {
		conn.Close()
		return fmt.Errorf("sse: %v %v", resp, err)
	}
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			conn.Close()
			return fmt.Errorf("welcome: %w", err)
		}
		if strings.HasPrefix(line, "data: ") {
			break
		}
	}
	go io.Copy(io.Discard, br)
	return nil
}

// pollClient keeps one connection per session, as a browser polling one node does.
func pollClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1, DisableCompression: true}}
}

func openPoll(ctx context.Context, base, token string) error {
	hc := pollClient()
	frames, err := pollOnce(ctx, hc, base+"/poll?token="+url.QueryEscape(token))
	if err != nil {
		return err
	}
	var welcome wire.Welcome
	if len(frames) == 0 || json.Unmarshal(frames[0], &welcome) != nil || welcome.Session == "" {
		return fmt.Errorf("first poll answered %s", frames)
	}
	go func() {
		for {
			if _, err := pollOnce(context.Background(), hc, base+"/poll?session="+url.QueryEscape(welcome.Session)); err != nil {
				return
			}
		}
	}()
	return nil
}

func pollOnce(ctx context.Context, hc *http.Client, u string) ([]json.RawMessage, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		return nil, fmt.Errorf("poll: %d %s", resp.StatusCode, b)
	}
	var frames []json.RawMessage
	err = json.NewDecoder(resp.Body).Decode(&frames)
	return frames, err
}
