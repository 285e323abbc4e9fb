package wsconn

import (
	"bytes"
	"testing"

	"github.com/heraldpush/herald/pkg/wsframe"
)

func TestPreparedBinaryVariant(t *testing.T) {
	p := Prepare([]byte(`{"type":"push"}`))
	text := p.frameFor(&Conn{})
	bin := p.frameFor(&Conn{Binary: true})
	if text[0] != 0x80|wsframe.OpText || bin[0] != 0x80|wsframe.OpBinary || !bytes.Equal(text[1:], bin[1:]) {
		t.Fatalf("text %x binary %x", text[:2], bin[:2])
	}
	if &p.frameFor(&Conn{Binary: true})[0] != &bin[0] {
		t.Fatal("binary frame built twice")
	}
}

func TestPrepareInPlaceFramesWhereItLies(t *testing.T) {
	// One payload length per header size: 7 bits, 16 bits, 64 bits.
	for _, n := range []int{0, 125, 126, 0xFFFF, 0x10000} {
		payload := bytes.Repeat([]byte{'x'}, n)
		buf := append(make([]byte, HeadRoom), payload...)
		got, want := PrepareInPlace(buf), Prepare(payload)
		if !bytes.Equal(got.text, want.text) || got.head != want.head {
			t.Errorf("%d bytes: frame %x… head %d, want %x… head %d", n, got.text[:min(12, len(got.text))], got.head, want.text[:min(12, len(want.text))], want.head)
		}
		if &got.text[len(got.text)-1] != &buf[len(buf)-1] {
			t.Errorf("%d bytes: payload copied", n)
		}
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
