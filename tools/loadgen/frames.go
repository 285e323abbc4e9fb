package main

import (
	"bytes"
	"strconv"
)

// What the load modes put into messages and read back out of frames. The server's frames are compact
// JSON written by encoding/json from structs whose first field is "type"; the payloads inside them are
// loadgen's own. So a field is found by its first `"key":` without a full JSON decode, which would cost
// the load generator CPU it shares with the servers. Everything here is pure.

// jsonField returns the value of the first `"key":` in p: a string's bytes without the quotes, or a
// number's digits; nil when absent. Strings with escapes are not expected (loadgen chooses them).
func jsonField(p []byte, key string) []byte {
	var pat [64]byte
	k := append(append(append(pat[:0], '"'), key...), '"', ':')
	i := bytes.Index(p, k)
	if i < 0 {
		return nil
	}
	v := p[i+len(k):]
	for len(v) > 0 && v[0] == ' ' {
		v = v[1:]
	}
	if len(v) == 0 {
		return nil
	}
	if v[0] == '"' {
		end := bytes.IndexByte(v[1:], '"')
		if end < 0 {
			return nil
		}
		return v[1 : 1+end]
	}
	end := 0
	for end < len(v) && (v[end] == '-' || v[end] >= '0' && v[end] <= '9') {
		end++
	}
	if end == 0 {
		return nil
	}
	return v[:end]
}

// atoi parses a decimal integer from b.
func atoi(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 19 {
		return 0, false
	}
	neg := b[0] == '-'
	if neg {
		b = b[1:]
		if len(b) == 0 {
			return 0, false
		}
	}
	var n int64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, true
}

// Frame kinds the load modes tell apart.
const (
	kindPush  = "push"
	kindUpAck = "up_ack"
	kindError = "error"
	kindPong  = "pong"
	kindRoom  = "room"
)

// parsedFrame is what loadgen needs from one server frame.
type parsedFrame struct {
	kind string // the frame's type ("" when it has none)
	sent int64  // push: the "t" in its data, unix ns (0 when absent); up_ack and error: from the ref
	seq  int64  // up_ack and error: the sequence number in the ref
	code string // error: its code
	ok   bool   // push: t was found; up_ack/error: the ref was loadgen's
}

// parseFrame reads the payload of one text frame from the server.
func parseFrame(p []byte) parsedFrame {
	var f parsedFrame
	typ := jsonField(p, "type")
	switch string(typ) { // no allocation: the conversion is only compared
	case kindPush:
		f.kind = kindPush
		f.sent, f.ok = atoi(jsonField(p, "t"))
	case kindUpAck:
		f.kind = kindUpAck
		f.seq, f.sent, f.ok = parseRef(jsonField(p, "ref"))
	case kindError:
		f.kind = kindError
		f.code = string(jsonField(p, "code"))
		f.seq, f.sent, f.ok = parseRef(jsonField(p, "ref"))
	case kindPong:
		f.kind = kindPong
	case kindRoom:
		f.kind = kindRoom
	default:
		f.kind = string(typ)
	}
	return f
}

// roomStamp opens the data of every room message loadgen publishes: {"t":<unix ns sent>,"p":…}.
var roomStamp = []byte(`{"t":`)

// eachStamp calls fn with the send time of each of a room frame's messages.
func eachStamp(p []byte, fn func(sent int64)) {
	for {
		i := bytes.Index(p, roomStamp)
		if i < 0 {
			return
		}
		p = p[i+len(roomStamp):]
		end := bytes.IndexAny(p, ",}")
		if end < 0 {
			return
		}
		if sent, ok := atoi(p[:end]); ok {
			fn(sent)
		}
		p = p[end:]
	}
}

// appendRoomBody writes a room push body whose data is about size bytes: the stamp and padding.
func appendRoomBody(dst []byte, sent int64, size int) []byte {
	dst = append(dst, `{"data":{"t":`...)
	dst = strconv.AppendInt(dst, sent, 10)
	dst = append(dst, `,"p":"`...)
	for n := len(`{"t":1700000000000000000,"p":""}`); n < size; n++ {
		dst = append(dst, 'x')
	}
	return append(dst, `"}}`...)
}

// appendRef writes the ref of upstream message seq sent at unix ns sent: "<seq>.<sent>". It is unique
// per connection, and every connection is its own device, so it is unique per device as the protocol
// asks; and the up_ack that echoes it tells its round trip without a table.
func appendRef(dst []byte, seq, sent int64) []byte {
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, '.')
	return strconv.AppendInt(dst, sent, 10)
}

// parseRef reads a ref written by appendRef.
func parseRef(ref []byte) (seq, sent int64, ok bool) {
	dot := bytes.IndexByte(ref, '.')
	if dot < 0 {
		return 0, 0, false
	}
	seq, ok1 := atoi(ref[:dot])
	sent, ok2 := atoi(ref[dot+1:])
	if !ok1 || !ok2 {
		return 0, 0, false
	}
	return seq, sent, true
}

// appendUpFrame writes the JSON of one upstream message: {"type":"up","ref":…,"data":{"n":seq,"p":pad}}.
func appendUpFrame(dst []byte, seq, sent int64, pad string) []byte {
	dst = append(dst, `{"type":"up","ref":"`...)
	dst = appendRef(dst, seq, sent)
	dst = append(dst, `","data":{"n":`...)
	dst = strconv.AppendInt(dst, seq, 10)
	dst = append(dst, `,"p":"`...)
	dst = append(dst, pad...)
	return append(dst, `"}}`...)
}

// appendStampData writes the data of a push or broadcast: {"t":<unix ns>}.
func appendStampData(dst []byte, sent int64) []byte {
	dst = append(dst, `{"t":`...)
	dst = strconv.AppendInt(dst, sent, 10)
	return append(dst, '}')
}

// appendPushBody writes a POST /v1/push body for uids with data {"t":sent}. uids are loadgen's own
// (letters, digits, '-'), so they need no escaping.
func appendPushBody(dst []byte, uids []string, sent int64) []byte {
	dst = append(dst, `{"uids":[`...)
	for i, u := range uids {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '"')
		dst = append(dst, u...)
		dst = append(dst, '"')
	}
	dst = append(dst, `],"data":`...)
	dst = appendStampData(dst, sent)
	return append(dst, '}')
}

// sumDelivered adds up every "delivered" count in a push or broadcast answer.
func sumDelivered(body []byte) int64 {
	const key = `"delivered":`
	var sum int64
	for {
		i := bytes.Index(body, []byte(key))
		if i < 0 {
			return sum
		}
		body = body[i+len(key):]
		end := 0
		for end < len(body) && body[end] >= '0' && body[end] <= '9' {
			end++
		}
		if n, ok := atoi(body[:end]); ok {
			sum += n
		}
		body = body[end:]
	}
}
