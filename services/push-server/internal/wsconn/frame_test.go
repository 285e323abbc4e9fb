package wsconn

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/gobwas/ws"
)

func TestAppendFrameParsesBack(t *testing.T) {
	for _, n := range []int{0, 1, 125, 126, 127, 65535, 65536, 200000} {
		payload := bytes.Repeat([]byte{'x'}, n)
		frame := appendFrame(nil, opText, payload)
		// The library's reader must agree with the hand-written encoder.
		h, err := ws.ReadHeader(bytes.NewReader(frame))
		if err != nil || !h.Fin || h.OpCode != ws.OpText || h.Masked || h.Length != int64(n) {
			t.Fatalf("len %d: header %+v, %v", n, h, err)
		}
		got, ok := parseHeader(frame)
		if !ok || got.length != int64(n) || got.op != opText || !got.fin || got.masked || got.size+n != len(frame) {
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
		h, ok := parseHeader(b)
		if !ok || !h.masked || h.mask != f.Header.Mask || h.length != int64(n) || h.op != opBinary {
			t.Fatalf("len %d: %+v %v", n, h, ok)
		}
		// Every strict prefix of the header is "not yet".
		for cut := 0; cut < h.size; cut++ {
			if _, ok := parseHeader(b[:cut]); ok {
				t.Fatalf("len %d: header parsed from %d of %d bytes", n, cut, h.size)
			}
		}
	}
}

func TestCloseFrame(t *testing.T) {
	long := string(bytes.Repeat([]byte{'r'}, 300))
	f := closeFrame(1012, long)
	h, ok := parseHeader(f)
	if !ok || h.op != opClose || h.length > 125 {
		t.Fatalf("close frame header %+v", h)
	}
	if code := binary.BigEndian.Uint16(f[h.size:]); code != 1012 {
		t.Fatalf("code %d", code)
	}
}

func TestPreparedBinaryVariant(t *testing.T) {
	p := Prepare([]byte(`{"type":"push"}`))
	text := p.frameFor(&Conn{})
	bin := p.frameFor(&Conn{Binary: true})
	if text[0] != 0x80|opText || bin[0] != 0x80|opBinary || !bytes.Equal(text[1:], bin[1:]) {
		t.Fatalf("text %x binary %x", text[:2], bin[:2])
	}
	if &p.frameFor(&Conn{Binary: true})[0] != &bin[0] {
		t.Fatal("binary frame built twice")
	}
}

func TestBucket(t *testing.T) {
	var b Bucket
	now := int64(1_000_000_000)
	for i := range 3 {
		if !b.Allow(now, 1, 3) {
			t.Fatalf("message %d within the burst refused", i)
		}
	}
	if b.Allow(now, 1, 3) || b.Allow(now, 1, 3) || b.Strikes != 2 {
		t.Fatalf("over the burst: strikes %d", b.Strikes)
	}
	if !b.Allow(now+1e9, 1, 3) || b.Strikes != 0 {
		t.Fatal("a second later one token should be back and the strikes cleared")
	}
}
