package main

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"time"

	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/wire"
)

// Bounds of a deliver stream (wire.PathDeliverStream). push-route closes a stream it has not used for
// a minute, so streamIdle only reaps the streams of a push-route that vanished without closing them.
const (
	streamIdle         = 2 * time.Minute
	streamWriteTimeout = 10 * time.Second
)

// handleDeliverStream serves deliver-batch as a stream: the body is a sequence of batch frames, each
// answered in the answer body before the next is read, so batches are delivered in the order they
// were sent, as on one keep-alive connection. A frame the node cannot read ends the stream (push-route
// counts that batch as not delivered and opens another); so does the node's shutdown, between frames:
// a batch that was read is answered. push-route sees the end of an idle stream before it uses it
// again.
func handleDeliverStream(s *server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Content-Type") != wire.ContentTypeBatchStream {
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeInvalidRequest, "a deliver stream is of type %s", wire.ContentTypeBatchStream))
			return
		}
		rc := http.NewResponseController(w)
		// Answers go out while the body is still being read, which HTTP/1.1 servers do not allow
		// unless asked.
		if err := rc.EnableFullDuplex(); err != nil {
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeInvalidRequest, "a deliver stream needs HTTP/1.1: %v", err))
			return
		}
		w.Header().Set("Content-Type", wire.ContentTypeBatchStream)
		w.WriteHeader(http.StatusOK)
		if rc.Flush() != nil {
			return
		}
		// The node's shutdown wakes a stream waiting for its next frame, so the listener's graceful
		// shutdown does not wait the idle time out.
		stop := context.AfterFunc(s.streams, func() { rc.SetReadDeadline(time.Now()) })
		defer stop()
		defer func() {
			// What follows the handler must not wait: the answer's last chunk is written whatever
			// the last answer's write deadline, so push-route sees a clean end, and net/http's read
			// of what is left of the body, which has no end, stops at once.
			rc.SetWriteDeadline(time.Time{})
			rc.SetReadDeadline(time.Now())
		}()
		body := bufio.NewReaderSize(r.Body, 4096)
		var in, out []byte
		for {
			// The deadline before the check: a shutdown between the two would otherwise have its
			// deadline overwritten.
			if rc.SetReadDeadline(time.Now().Add(streamIdle)) != nil || s.streams.Err() != nil {
				return
			}
			frame, err := wire.ReadFrame(body, in, wire.MaxInternalBody)
			if err != nil {
				if !errors.Is(err, io.EOF) && !errors.Is(err, os.ErrDeadlineExceeded) {
					s.logger.Warn("deliver stream ended", "remote", r.RemoteAddr, "err", err)
				}
				return
			}
			in = frame // reused for the next frame: deliver copies what it keeps of a message
			items, err := wire.ParseDeliverBatchRequest(frame)
			if err != nil {
				s.logger.Warn("deliver stream: unreadable batch; ending the stream", "remote", r.RemoteAddr, "err", err)
				return
			}
			out = wire.AppendDeliverBatchResponseFrame(out[:0], s.deliverItems(items))
			rc.SetWriteDeadline(time.Now().Add(streamWriteTimeout))
			if _, err := w.Write(out); err != nil {
				return
			}
			if err := rc.Flush(); err != nil {
				return
			}
		}
	})
}
