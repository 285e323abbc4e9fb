package wsframe

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/gobwas/ws"
)

func TestAppendFrameParsesBack(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 200000} {
		payload := bytes.Repeat([]byte{'x'}, n)
		frame := Append(nil, OpText, payload)
		// The library's reader must agree with the hand-written encoder.
		h, err := ws.ReadHeader(bytes.NewReader(frame))
		if err != nil || !h.Fin || h.OpCode != ws.OpText || h.Masked || h.Length != int64(n) {
			t.Fatalf("len %d: header %+v, %v", n, h, err)
		}
		got, ok := ParseHeader(frame)
		if !ok || got.Length != int64(n) || got.Op != OpText || !got.Fin || got.Masked || got.Size+n != len(frame) {
			t.Fatalf("len %d: parsed %+v ok %v, frame %d bytes", n, got, ok, len(frame))
		}
	}
}

func TestParseHeaderOfClientFrames(t *testing.T) {
	for _, n := range []int{0, 10, 126, 70000} {
		var buf bytes.Buffer
		f := ws.MaskFrame(ws.NewFrame(ws.OpBinary, true, bytes.Repeat([]byte{'y'}, n)))
		if err := ws.WriteFrame(&buf, f); err != nil {
			t.Fatal(err)
		}
		b := buf.Bytes()
		h, ok := ParseHeader(b)
		if !ok || !h.Masked || h.Mask != f.Header.Mask || h.Length != int64(n) || h.Op != OpBinary {
			t.Fatalf("len %d: %+v %v", n, h, ok)
		}
		// Every strict prefix of the header is "not yet".
		for cut := 0; cut < h.Size; cut++ {
			if _, ok := ParseHeader(b[:cut]); ok {
				t.Fatalf("len %d: header parsed from %d of %d bytes", n, cut, h.Size)
			}
		}
	}
}

func TestCloseFrame(t *testing.T) {
	long := string(bytes.Repeat([]byte{'r'}, 300))
	f := Close(1012, long)
	h, ok := ParseHeader(f)
	if !ok || h.Op != OpClose || h.Length > 125 {
		t.Fatalf("close frame header %+v", h)
	}
	if code := binary.BigEndian.Uint16(f[h.Size:]); code != 1012 {
		t.Fatalf("code %d", code)
	}
}
