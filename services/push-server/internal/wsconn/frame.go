package wsconn

import (
	"encoding/binary"
	"sync"
)

// WebSocket opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// appendFrame appends one unmasked, final server frame. Hand-written because it runs once per
// message per encoding and a library writer would need an io.Writer and its buffering.
func appendFrame(dst []byte, op byte, payload []byte) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(payload); {
	case n <= 125:
		dst = append(dst, byte(n))
	case n <= 0xFFFF:
		dst = append(dst, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, payload...)
}

// closeFrame is a close frame with code and reason (cut to fit a control frame).
func closeFrame(code int, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	p := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(p, uint16(code))
	p = append(p, reason...)
	return appendFrame(make([]byte, 0, 4+len(p)), opClose, p)
}

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
	text := appendFrame(make([]byte, 0, len(payload)+10), opText, payload)
	return &Prepared{text: text, head: len(text) - len(payload)}
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
		p.binary[0] = 0x80 | opBinary
	})
	return p.binary
}

// header is a parsed client frame header.
type header struct {
	fin    bool
	rsv    byte
	op     byte
	masked bool
	mask   [4]byte
	length int64
	size   int // header bytes
}

// parseHeader parses the frame header at the start of b. ok is false when b is too short to hold it.
func parseHeader(b []byte) (h header, ok bool) {
	if len(b) < 2 {
		return h, false
	}
	h.fin = b[0]&0x80 != 0
	h.rsv = b[0] & 0x70
	h.op = b[0] & 0x0F
	h.masked = b[1]&0x80 != 0
	h.size = 2
	switch l := b[1] & 0x7F; l {
	case 126:
		if len(b) < 4 {
			return h, false
		}
		h.length = int64(binary.BigEndian.Uint16(b[2:4]))
		h.size = 4
	case 127:
		if len(b) < 10 {
			return h, false
		}
		h.length = int64(binary.BigEndian.Uint64(b[2:10]) & (1<<63 - 1))
		h.size = 10
	default:
		h.length = int64(l)
	}
	if h.masked {
		if len(b) < h.size+4 {
			return h, false
		}
		copy(h.mask[:], b[h.size:h.size+4])
		h.size += 4
	}
	return h, true
}
