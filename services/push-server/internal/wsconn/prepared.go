package wsconn

import (
	"sync"

	"github.com/heraldpush/herald/pkg/wsframe"
)

// Prepared is one message encoded once for every connection: the same bytes go to every text client,
// and the binary variant is built on first use.
type Prepared struct {
	text []byte
	head int // bytes of text before the payload

	binOnce sync.Once
	binary  []byte
	sseOnce sync.Once
	sse     []byte
}

// Prepare frames payload (a JSON envelope) for sending to many connections.
func Prepare(payload []byte) *Prepared {
	text := wsframe.Append(make([]byte, 0, len(payload)+10), wsframe.OpText, payload)
	return &Prepared{text: text, head: len(text) - len(payload)}
}

// HeadRoom is the room PrepareInPlace wants in front of a payload.
const HeadRoom = wsframe.MaxHeader

// PrepareInPlace frames buf[HeadRoom:] (a JSON envelope) where it lies, its header written into the
// room in front of it, so a message built for sending costs one buffer, not two. buf is the
// Prepared's from now on.
func PrepareInPlace(buf []byte) *Prepared {
	var h [HeadRoom]byte
	head := wsframe.AppendHeader(h[:0], wsframe.OpText, len(buf)-HeadRoom)
	start := HeadRoom - len(head)
	copy(buf[start:], head)
	return &Prepared{text: buf[start:], head: len(head)}
}

// frameFor returns the bytes for c's transport and encoding.
func (p *Prepared) frameFor(c *Conn) []byte {
	switch {
	case c.Transport == Poll:
		return p.text[p.head:]
	case c.Transport == SSE:
		p.sseOnce.Do(func() { p.sse = appendEvent(nil, p.text[p.head:]) })
		return p.sse
	case !c.Binary:
		return p.text
	}
	p.binOnce.Do(func() {
		p.binary = append([]byte(nil), p.text...)
		p.binary[0] = 0x80 | wsframe.OpBinary
	})
	return p.binary
}
