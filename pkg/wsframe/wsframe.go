// Package wsframe encodes server frames and parses frame headers of WebSocket (RFC 6455 §5.2) on byte
// slices, with no io.Reader and no buffering: the push-server's engine and the load generator both cut
// frames out of bytes they read from sockets themselves. Hand-written because it runs once per
// message, where a library's frame writer would want an io.Writer and its buffering.
package wsframe

import "encoding/binary"

// Opcodes.
const (
	OpContinuation = 0x0
	OpText         = 0x1
	OpBinary       = 0x2
	OpClose        = 0x8
	OpPing         = 0x9
	OpPong         = 0xA
)

// Header is a parsed frame header.
type Header struct {
	Fin    bool
	Rsv    byte // the three reserved bits, shifted down
	Op     byte
	Masked bool
	Mask   [4]byte
	Length int64 // of the payload
	Size   int   // of the header itself, in bytes
}

// ParseHeader parses the frame header at the start of b. ok is false while b is too short to hold it.
func ParseHeader(b []byte) (h Header, ok bool) {
	if len(b) < 2 {
		return h, false
	}
	h.Fin = b[0]&0x80 != 0
	h.Rsv = (b[0] & 0x70) >> 4
	h.Op = b[0] & 0x0F
	h.Masked = b[1]&0x80 != 0
	h.Size = 2
	switch l := b[1] & 0x7F; l {
	case 126:
		if len(b) < 4 {
			return h, false
		}
		h.Length = int64(binary.BigEndian.Uint16(b[2:4]))
		h.Size = 4
	case 127:
		if len(b) < 10 {
			return h, false
		}
		h.Length = int64(binary.BigEndian.Uint64(b[2:10]) & (1<<63 - 1))
		h.Size = 10
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		if len(b) < h.Size+4 {
			return h, false
		}
		copy(h.Mask[:], b[h.Size:h.Size+4])
		h.Size += 4
	}
	return h, true
}

// Append appends one unmasked, final frame: a server's.
func Append(dst []byte, op byte, payload []byte) []byte {
	return append(AppendHeader(dst, op, len(payload)), payload...)
}

// MaxHeader is the longest header a server frame has (AppendHeader).
const MaxHeader = 10

// AppendHeader appends the header of an unmasked, final frame with an n-byte payload.
func AppendHeader(dst []byte, op byte, n int) []byte {
	dst = append(dst, 0x80|op)
	switch {
	case n <= 125:
		return append(dst, byte(n))
	case n <= 0xFFFF:
		return append(dst, 126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 127)
		return binary.BigEndian.AppendUint64(dst, uint64(n))
	}
}

// Close is a close frame with code and reason (cut to fit a control frame).
func Close(code int, reason string) []byte {
	if len(reason) > 123 {
		reason = reason[:123]
	}
	p := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(p, uint16(code))
	p = append(p, reason...)
	return Append(make([]byte, 0, 4+len(p)), OpClose, p)
}
