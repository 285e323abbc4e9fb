package client

import (
	"io"
	"log/slog"
	"testing"

	"github.com/heraldpush/herald/pkg/wire"
)

// FuzzDispatch hands the client arbitrary server frames: it must never panic or block, and a push it
// hands on must carry what the frame said.
func FuzzDispatch(f *testing.F) {
	for _, s := range []string{
		`{"type":"push","id":"m1","data":{"a":1},"ts":1}`,
		`{"type":"error","ref":"r1","code":"rate_limited","message":"slow down"}`,
		`{"type":"up_ack","ref":"r1","id":"x"}`,
		`{"type":"reconnect","reason":"node draining"}`,
		`{"type":"pong"}`,
		`{"type":"push","id":1}`,
		`{"type":`,
		`[]`,
		`{"type":"welcome","conn_id":"c","node":"n","uid":"u","heartbeat_s":30}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		c := &Conn{
			log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
			pushes:  make(chan wire.Push, 1),
			errs:    make(chan wire.Error, errBuffer),
			ups:     newUpTable(),
			closing: make(chan struct{}),
		}
		c.dispatch(frame)
		select {
		case p := <-c.pushes:
			if p.Type != wire.TypePush {
				t.Fatalf("handed on %+v as a push", p)
			}
		default:
		}
	})
}
