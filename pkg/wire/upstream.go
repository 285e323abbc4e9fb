package wire

import (
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
)

// UpstreamTopic is the default Kafka topic of device → server messages.
const UpstreamTopic = "herald.upstream"

// UpstreamRecord is the value of a record on the upstream topic (keyed by uid). TS is unix
// milliseconds, when the push-server received the frame.
type UpstreamRecord struct {
	ID     string          `json:"id"`
	UID    string          `json:"uid"`
	Device string          `json:"device"`
	ConnID string          `json:"conn_id"`
	Node   string          `json:"node"`
	TS     int64           `json:"ts"`
	Data   json.RawMessage `json:"data"`
}

var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// UpstreamID derives an upstream message's id from who sent it and the client's ref. A client that
// resends an unacknowledged message with the same ref, on this connection or a later one, produces a
// record with the same id, so the archive (unique on id) and any consumer that deduplicates by id see
// it once. Refs must therefore be unique per device, as the Go client's are.
func UpstreamID(uid, device, ref string) string {
	h := sha256.New()
	for _, part := range []string{uid, device, ref} {
		h.Write([]byte(part))
		h.Write([]byte{0}) // separator: no part contains NUL, so ("a","bc") ≠ ("ab","c")
	}
	return idEncoding.EncodeToString(h.Sum(nil)[:20])
}
