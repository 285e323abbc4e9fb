package wire

// push-route's internal API, spoken by push-servers with the same shared secret (SecretHeader): acks
// from devices, and the pending offline messages a user's new connection must get.

// Internal API paths on push-route's internal listener.
const (
	PathAcks    = "/internal/v1/acks"
	PathPending = "/internal/v1/pending"
)

// Ack is one device's acknowledgement of message ID for UID.
type Ack struct {
	UID string `json:"uid"`
	ID  string `json:"id"`
}

// AckBatch carries acks gathered by a push-server; push-route clears the acked pending messages.
type AckBatch struct {
	Acks []Ack `json:"acks"`
}

// PendingRequest asks for UID's pending messages.
type PendingRequest struct {
	UID string `json:"uid"`
}

// PendingResponse lists UID's pending (unacked, unexpired) messages, oldest first.
type PendingResponse struct {
	Messages []Message `json:"messages"`
}
