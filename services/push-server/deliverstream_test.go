package main

import (
	"context"
	"io"
	"net/http"
	"testing"

	"github.com/heraldpush/herald/pkg/apiclient"
	"github.com/heraldpush/herald/pkg/wire"
)

// A frame the node cannot read ends that stream, and only that stream.
func TestDeliverStreamEndsOnAnUnreadableFrame(t *testing.T) {
	n := startNode(t, "ps-stream-bad", nodeOpts{})
	c := dial(t, n, "streamed", "a")
	api := apiclient.NewNodeClient(http.DefaultClient, secret)
	defer api.Close()
	deliver := func(id string) {
		t.Helper()
		item := wire.DeliverItem{Message: wire.Message{ID: id, Data: []byte(`1`), TS: 1}, UIDs: []string{"streamed"}}
		answers, err := api.DeliverBatch(context.Background(), n.internalURL, apiclient.BatchStream, []wire.DeliverItem{item})
		if err != nil || answers[0].Results[0].Delivered != 1 {
			t.Fatalf("deliver %s: %+v, %v", id, answers, err)
		}
		if p := c.nextOfType("push"); p["id"] != id {
			t.Fatalf("push %v, want %s", p, id)
		}
	}
	deliver("before-bad") // api's stream, open beside the bad one

	body, feed := io.Pipe()
	req, _ := http.NewRequest(http.MethodPost, n.internalURL+wire.PathDeliverStream, body)
	req.Header.Set(wire.SecretHeader, secret)
	req.Header.Set("Content-Type", wire.ContentTypeBatchStream)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != wire.ContentTypeBatchStream {
		t.Fatalf("stream answered %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	go feed.Write([]byte{0, 0, 0, 3, 0x0a, 0x7f, 's'}) // a frame whose batch claims more than it has
	if rest, err := io.ReadAll(resp.Body); err != nil || len(rest) != 0 {
		t.Fatalf("after an unreadable frame the answer went on: %q, %v; want its clean end", rest, err)
	}
	feed.Close()
	deliver("after-bad")
}

// A stream waiting for its next batch does not hold up the node's shutdown: stop fails the test if
// the internal listener's graceful shutdown times out.
func TestDeliverStreamEndsOnShutdown(t *testing.T) {
	n := startNode(t, "ps-stream-stop", nodeOpts{})
	dial(t, n, "streamed", "a")
	api := apiclient.NewNodeClient(http.DefaultClient, secret)
	defer api.Close()
	item := wire.DeliverItem{Message: wire.Message{ID: "before-stop", Data: []byte(`1`), TS: 1}, UIDs: []string{"streamed"}}
	if _, err := api.DeliverBatch(context.Background(), n.internalURL, apiclient.BatchStream, []wire.DeliverItem{item}); err != nil {
		t.Fatal(err)
	}
	n.stop(t) // the stream is idle in api's pool, open
}
