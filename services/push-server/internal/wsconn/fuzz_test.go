package wsconn

import (
	"encoding/binary"
	"testing"
	"unicode/utf8"

	"github.com/heraldpush/herald/pkg/wsframe"
)

// recorder is a Handler that keeps what a connection delivered.
type recorder struct {
	msgs [][]byte
}

func (r *recorder) OnMessage(_ *Conn, p []byte)      { r.msgs = append(r.msgs, append([]byte(nil), p...)) }
func (r *recorder) OnClose(_ *Conn, _ int, _ string) {}

// clientFrame is a masked client frame, as browsers send.
func clientFrame(fin bool, op byte, payload []byte) []byte {
	b0 := op
	if fin {
		b0 |= 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		out = append(out, 0x80|byte(n))
	case n < 1<<16:
		out = append(out, 0x80|126, byte(n>>8), byte(n))
	default:
		out = append(out, 0x80|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	mask := [4]byte{1, 2, 3, 4}
	out = append(out, mask[:]...)
	for i, c := range payload {
		out = append(out, c^mask[i%4])
	}
	return out
}

// FuzzFrames feeds arbitrary bytes to the frame reader, in two reads split anywhere: it must never
// panic, never deliver a message over the limit or a text message that is not UTF-8, and stop at the
// first protocol error.
func FuzzFrames(f *testing.F) {
	f.Add(clientFrame(true, wsframe.OpText, []byte(`{"type":"ping"}`)), 3)
	f.Add(append(clientFrame(false, wsframe.OpText, []byte("hel")), clientFrame(true, wsframe.OpContinuation, []byte("lo"))...), 7)
	f.Add(clientFrame(true, wsframe.OpPing, []byte("p")), 1)
	f.Add(clientFrame(true, wsframe.OpClose, []byte{0x03, 0xe8, 'b', 'y', 'e'}), 0)
	f.Add(clientFrame(true, wsframe.OpBinary, make([]byte, 300)), 100)
	f.Add(clientFrame(true, wsframe.OpText, []byte{0xff, 0xfe}), 2)
	f.Add([]byte{0x81, 0x05, 'h', 'e', 'l', 'l', 'o'}, 0) // unmasked
	f.Add([]byte{0x81, 0xff, 0x7f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 4)
	const limit = 1024
	f.Fuzz(func(t *testing.T, data []byte, split int) {
		h := &recorder{}
		e := &Engine{cfg: Config{MaxMessage: limit}, handler: h}
		c := NewConn(-1, 1<<20) // never started: what it writes only queues
		if split < 0 || split > len(data) {
			split = len(data) / 2
		}
		done := e.frames(c, data[:split])
		if !done {
			rest := data[split:]
			if c.rd != nil && c.rd.partial != nil {
				rest = append(append([]byte(nil), c.rd.partial...), rest...)
			}
			e.frames(c, rest)
		}
		for _, m := range h.msgs {
			if len(m) > limit {
				t.Fatalf("a %d-byte message passed the %d-byte limit", len(m), limit)
			}
		}
		if c.closing() && c.closeCode != closeNoStatus && !validCloseCode(c.closeCode) {
			t.Fatalf("closed with code %d, which no endpoint may use", c.closeCode)
		}
		if !utf8.ValidString(c.closeReason) {
			t.Fatalf("close reason %q is not UTF-8", c.closeReason)
		}
	})
}
