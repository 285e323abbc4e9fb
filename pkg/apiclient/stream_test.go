package apiclient

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/wire"
)

// streamNode serves deliver streams as a push-server does, answering each uid with one delivery,
// except that it ends a stream after perStream batches (0: never) and drops the connection after
// reading batch number dieOn (counted from 1 over all streams) without answering it, as a node that
// dies mid-batch.
type streamNode struct {
	perStream int
	dieOn     int32
	hang      bool // read the batch, never answer
	streams   atomic.Int32
	batches   atomic.Int32
}

func (n *streamNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get(wire.SecretHeader) != "s3cret" {
		http.Error(w, `{"error":{"code":"unauthorized","message":"internal secret"}}`, http.StatusUnauthorized)
		return
	}
	n.streams.Add(1)
	rc := http.NewResponseController(w)
	rc.EnableFullDuplex()
	// As the push-server's handler: net/http reads what is left of a body before it closes the
	// connection, and a stream's body has no end.
	defer rc.SetReadDeadline(time.Now())
	w.Header().Set("Content-Type", wire.ContentTypeBatchStream)
	w.WriteHeader(http.StatusOK)
	rc.Flush()
	body := bufio.NewReader(r.Body)
	for served := 0; n.perStream == 0 || served < n.perStream; served++ {
		frame, err := wire.ReadFrame(body, nil, wire.MaxInternalBody)
		if err != nil {
			return
		}
		nth := n.batches.Add(1)
		if n.hang {
			// Until the client gives up and closes the stream (which, in full duplex, the request's
			// context does not tell).
			wire.ReadFrame(body, nil, wire.MaxInternalBody)
			return
		}
		if nth == n.dieOn {
			conn, _, _ := rc.Hijack()
			conn.Close()
			return
		}
		items, err := wire.ParseDeliverBatchRequest(frame)
		if err != nil {
			return
		}
		answers := make([]wire.DeliverResponse, len(items))
		for i, it := range items {
			for _, uid := range it.UIDs {
				answers[i].Results = append(answers[i].Results, wire.DeliverResult{UID: uid, Delivered: 1, ConnIDs: []string{uid + ":1"}})
			}
		}
		w.Write(wire.AppendDeliverBatchResponseFrame(nil, answers))
		rc.Flush()
	}
}

func streamItems(uids ...string) []wire.DeliverItem {
	return []wire.DeliverItem{{Message: wire.Message{ID: "m", Data: []byte(`1`), TS: 1}, UIDs: uids, TraceID: "t"}}
}

func TestStreamCarriesBatchesOnOneStream(t *testing.T) {
	node := &streamNode{}
	srv := httptest.NewServer(node)
	defer srv.Close()
	c := NewNodeClient(srv.Client(), "s3cret")
	defer c.Close()
	for i := range 5 {
		answers, err := c.DeliverBatch(context.Background(), srv.URL, BatchStream, streamItems("a", "b"))
		if err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		if len(answers) != 1 || len(answers[0].Results) != 2 || answers[0].Results[1].UID != "b" || answers[0].Results[1].Delivered != 1 {
			t.Fatalf("batch %d answered %+v", i, answers)
		}
	}
	if got := node.streams.Load(); got != 1 {
		t.Fatalf("%d streams for 5 batches in a row, want 1", got)
	}
}

// A node ends its streams between batches (its shutdown, its idle timeout): an idle stream the node
// has ended is not used again, so no batch is lost on it.
func TestStreamEndedByTheNodeIsReplaced(t *testing.T) {
	node := &streamNode{perStream: 1}
	srv := httptest.NewUnstartedServer(node)
	var ended atomic.Int32
	srv.Config.ConnState = func(_ net.Conn, state http.ConnState) {
		if state == http.StateClosed {
			ended.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	c := NewNodeClient(srv.Client(), "s3cret")
	defer c.Close()
	for i := range 3 {
		if _, err := c.DeliverBatch(context.Background(), srv.URL, BatchStream, streamItems("a")); err != nil {
			t.Fatalf("batch %d: %v", i, err)
		}
		// The node has ended the stream, and its end has reached the client's socket.
		for deadline := time.Now().Add(5 * time.Second); ended.Load() <= int32(i); {
			if time.Now().After(deadline) {
				t.Fatal("the node did not end the stream")
			}
			time.Sleep(time.Millisecond)
		}
	}
	if s, b := node.streams.Load(), node.batches.Load(); s != 3 || b != 3 {
		t.Fatalf("%d streams, %d batches read; want each of 3 batches read once, on its own stream", s, b)
	}
}

// A node that read a batch and died before answering may have delivered part of it: the batch fails
// and is not sent again, also on a stream that had served batches before.
func TestStreamNodeDyingMidBatchFailsTheBatch(t *testing.T) {
	node := &streamNode{dieOn: 2}
	srv := httptest.NewServer(node)
	defer srv.Close()
	c := NewNodeClient(srv.Client(), "s3cret")
	defer c.Close()
	if _, err := c.DeliverBatch(context.Background(), srv.URL, BatchStream, streamItems("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.DeliverBatch(context.Background(), srv.URL, BatchStream, streamItems("a")); err == nil {
		t.Fatal("a batch the node died on succeeded")
	}
	if b := node.batches.Load(); b != 2 {
		t.Fatalf("%d batches read, want 2: the one the node died on read once", b)
	}
	if _, err := c.DeliverBatch(context.Background(), srv.URL, BatchStream, streamItems("a")); err != nil {
		t.Fatalf("the batch after, on a new stream: %v", err)
	}
}

// A batch whose caller gives up fails; its stream is not used again (the cut-off may land late).
func TestStreamBatchCanceled(t *testing.T) {
	node := &streamNode{hang: true}
	srv := httptest.NewServer(node)
	defer srv.Close()
	c := NewNodeClient(srv.Client(), "s3cret")
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(100*time.Millisecond, cancel)
	if _, err := c.DeliverBatch(ctx, srv.URL, BatchStream, streamItems("a")); err == nil {
		t.Fatal("a canceled batch succeeded")
	}
	if n := len(c.streams.idle[srv.URL]); n != 0 {
		t.Fatalf("%d streams back in the pool after a canceled batch", n)
	}
}

func TestStreamBatchBoundedByContext(t *testing.T) {
	node := &streamNode{hang: true}
	srv := httptest.NewServer(node)
	defer srv.Close()
	c := NewNodeClient(srv.Client(), "s3cret")
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	if _, err := c.DeliverBatch(ctx, srv.URL, BatchStream, streamItems("a")); err == nil {
		t.Fatal("a batch the node never answered succeeded")
	}
	if waited := time.Since(start); waited > 5*time.Second {
		t.Fatalf("returned after %v, past its context's deadline", waited)
	}
}

func TestStreamRefusedIsAnAPIError(t *testing.T) {
	srv := httptest.NewServer(&streamNode{})
	defer srv.Close()
	c := NewNodeClient(srv.Client(), "wrong")
	defer c.Close()
	_, err := c.DeliverBatch(context.Background(), srv.URL, BatchStream, streamItems("a"))
	var apiErr *Error
	if !errors.As(err, &apiErr) || apiErr.Status != http.StatusUnauthorized || apiErr.Code != "unauthorized" {
		t.Fatalf("err %v, want the node's 401 unauthorized", err)
	}
}

// Streams unused for streamMaxIdle are closed, not reused (the node may be ending them), including
// those to a node that is never called again.
func TestStreamPoolClosesStaleStreams(t *testing.T) {
	var p streamPool
	open := func(url string, idleFor time.Duration) net.Conn {
		ours, theirs := net.Pipe()
		p.put(url, &deliverStream{conn: ours, buffered: bufio.NewReader(ours)})
		p.idle[url][len(p.idle[url])-1].lastUsed = time.Now().Add(-idleFor)
		return theirs
	}
	closed := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(time.Second))
		_, err := c.Read(make([]byte, 1))
		return errors.Is(err, io.EOF)
	}
	stale := open("http://a", 2*streamMaxIdle)
	fresh := open("http://a", 0)
	gone := open("http://gone", 2*streamMaxIdle)
	if st := p.take("http://a"); st == nil {
		t.Fatal("the fresh stream to a was not taken")
	}
	if !closed(stale) || !closed(gone) {
		t.Fatal("stale streams left open")
	}
	if st := p.take("http://a"); st != nil {
		t.Fatal("a stale stream was taken")
	}
	fresh.Close()
}

func TestBatchFormFor(t *testing.T) {
	both := []string{wire.ContentTypeProtobuf, wire.ContentTypeBatchStream}
	for _, tt := range []struct {
		encodings []string
		url       string
		want      BatchForm
	}{
		{both, "http://10.0.0.1:9082", BatchStream},
		{both, "https://ps-1.internal:9082", BatchBinary},
		{[]string{wire.ContentTypeProtobuf}, "http://10.0.0.1:9082", BatchBinary},
		{nil, "http://10.0.0.1:9082", BatchJSON},
	} {
		if got := BatchFormFor(tt.encodings, tt.url); got != tt.want {
			t.Errorf("BatchFormFor(%v, %s) = %v, want %v", tt.encodings, tt.url, got, tt.want)
		}
	}
}
