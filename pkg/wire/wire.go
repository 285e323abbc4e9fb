// Package wire defines the WebSocket frames between devices and push-servers (DESIGN.md contract) and
// the internal messages between push-route and push-servers. Every frame is one JSON object with a
// "type"; unknown fields are ignored so either side may add some.
package wire

import (
	"bytes"
	"encoding/json"
	"slices"
	"strconv"
)

// Frame types.
const (
	// Server → client.
	TypeWelcome   = "welcome"
	TypePush      = "push"
	TypePong      = "pong"
	TypeUpAck     = "up_ack"
	TypeError     = "error"
	TypeReconnect = "reconnect"
	TypeJoined    = "joined"
	TypeLeft      = "left"
	TypeRoom      = "room"
	// Both ways, on the HTTP transports only (SSE, long-poll), which have no close frame of their own:
	// the server's {"type":"close","code","reason"} ends a session; the client's {"type":"close"} on
	// POST /send leaves it.
	TypeClose = "close"
	// Client → server.
	TypePing  = "ping"
	TypeAck   = "ack"
	TypeUp    = "up"
	TypeJoin  = "join"
	TypeLeave = "leave"
)

// Error codes carried by error frames.
const (
	CodeMalformed   = "malformed_frame"   // not a JSON object with a string "type"
	CodeUnknownType = "unknown_type"      // a type the server does not know
	CodeBadRequest  = "invalid_frame"     // a known type with missing or bad fields
	CodeUnsupported = "unsupported"       // a known type this server does not serve (yet)
	CodeRateLimited = "rate_limited"      // too many frames; slow down
	CodeReplaced    = "replaced"          // the user opened more connections than allowed; this, the oldest, closes
	CodeTooLarge    = "payload_too_large" // data over the configured limit
	CodeUnavailable = "unavailable"       // a dependency failed; retry the same frame later
	CodeForbidden   = "forbidden"         // join: the token's rooms claim does not allow this room
	CodeInvalidRoom = "invalid_room"      // join, leave: not a room name
	CodeTooMany     = "too_many_rooms"    // join: the connection is in -max-rooms-per-conn rooms already
)

// WebSocket close codes the push-server uses (RFC 6455 and the IANA registry).
const (
	CloseNormal         = 1000
	CloseGoingAway      = 1001
	CloseProtocolError  = 1002
	CloseUnsupported    = 1003
	CloseInvalidPayload = 1007 // bad UTF-8 in a text frame
	ClosePolicy         = 1008 // sustained abuse (rate), idle timeout
	CloseTooBig         = 1009 // frame over the size limit
	CloseInternal       = 1011
	CloseServiceRestart = 1012 // drain: the node is going away, reconnect elsewhere
	CloseTryAgainLater  = 1013 // slow consumer (write queue overflowed), or a dependency failed at connect
	CloseReplaced       = 4001 // the user opened more connections than allowed; do not reconnect at once
)

// Welcome is the first frame on every connection.
type Welcome struct {
	Type       string `json:"type"`
	ConnID     string `json:"conn_id"`
	Node       string `json:"node"`
	UID        string `json:"uid"`
	HeartbeatS int    `json:"heartbeat_s"`
	// Session names an SSE or long-poll session in /send and /poll (absent on WebSocket): a secret.
	Session string `json:"session,omitempty"`
}

// Push carries one message to a device. TS is unix milliseconds.
type Push struct {
	Type string          `json:"type"`
	ID   string          `json:"id"`
	Data json.RawMessage `json:"data"`
	TS   int64           `json:"ts"`
}

// UpAck confirms that an upstream message with the client's Ref is safely stored under ID.
type UpAck struct {
	Type string `json:"type"`
	Ref  string `json:"ref"`
	ID   string `json:"id"`
}

// Error reports a problem with a frame (Ref names it when it had one) or with the connection.
type Error struct {
	Type    string `json:"type"`
	Ref     string `json:"ref,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
}

// Reconnect asks the client to connect again (through login) because this node is going away.
type Reconnect struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
}

// Inbound is any client → server frame; which fields matter depends on Type.
type Inbound struct {
	Type  string          `json:"type"`
	ID    string          `json:"id,omitempty"`    // ack
	Ref   string          `json:"ref,omitempty"`   // up, join, leave
	Data  json.RawMessage `json:"data,omitempty"`  // up
	Room  string          `json:"room,omitempty"`  // join, leave
	Since string          `json:"since,omitempty"` // join: the last room message id seen, to recover from
}

// RoomAnswer answers a join (Type joined) or a leave (Type left). Recovered is set on a join that
// asked to recover: whether everything since was replayed before it.
type RoomAnswer struct {
	Type      string `json:"type"`
	Room      string `json:"room"`
	Ref       string `json:"ref,omitempty"`
	Recovered *bool  `json:"recovered,omitempty"`
}

// RoomFrame carries a room's messages of one merge window, in publish order.
type RoomFrame struct {
	Type  string    `json:"type"`
	Room  string    `json:"room"`
	Items []Message `json:"items"`
}

// Message is one push as push-route hands it to push-servers. TS is unix milliseconds.
type Message struct {
	ID   string          `json:"id"`
	Data json.RawMessage `json:"data"`
	TS   int64           `json:"ts"`
}

// AppendPushFrame appends the frame that delivers m to a device (a Push) to b: what json.Marshal makes
// of it, less the HTML escaping, at a fraction of the cost (it is written once per message a push-server gets).
// Data is compacted, and must be valid JSON.
func (m Message) AppendPushFrame(b []byte) ([]byte, error) {
	b = slices.Grow(b, m.PushFrameLen())
	b = append(b, `{"type":"`+TypePush+`","id":`...)
	b = appendJSONString(b, m.ID)
	b = append(b, `,"data":`...)
	buf := bytes.NewBuffer(b)
	if err := json.Compact(buf, m.Data); err != nil {
		return nil, err
	}
	b = append(buf.Bytes(), `,"ts":`...)
	b = strconv.AppendInt(b, m.TS, 10)
	return append(b, '}'), nil
}

// PushFrameLen bounds the length of m's push frame when its id needs no escaping and its data is
// compact (as every id Herald makes, and data push-route has checked, are): room to build it in one
// buffer.
func (m Message) PushFrameLen() int {
	return len(`{"type":"`+TypePush+`","id":""`) + len(m.ID) + len(`,"data":`) + len(m.Data) +
		len(`,"ts":-9223372036854775808}`)
}

// appendJSONString appends s as a JSON string; only a string that needs escaping (never an id Herald
// makes) goes through encoding/json.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == '"' || c == '\\' || c >= 0x80 {
			quoted, _ := json.Marshal(s) // a string always encodes
			return append(b, quoted...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
