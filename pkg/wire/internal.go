package wire

// The push-server's internal API (DESIGN.md: "deliver a message to local users, broadcast, kick a
// user, node stats"), spoken by push-route and admin. Every call carries the shared internal secret in
// the header named by SecretHeader.

// SecretHeader carries the shared internal secret on internal calls.
const SecretHeader = "X-Herald-Internal-Secret"

// Internal API paths on a push-server's internal listener.
const (
	PathDeliver   = "/internal/v1/deliver"
	PathBroadcast = "/internal/v1/broadcast"
	PathKick      = "/internal/v1/kick"
	PathStats     = "/internal/v1/stats"
	PathDrain     = "/internal/v1/drain"
)

// DeliverRequest asks a node to write Message to every local connection of each uid.
type DeliverRequest struct {
	Message Message  `json:"message"`
	UIDs    []string `json:"uids"`
}

// DeliverResult is what happened for one uid. ConnIDs lists the connections the node holds for the
// uid (Delivered of them were written); a route in Redis naming this node with another conn_id is
// stale. Delivered 0 with no ConnIDs means the node does not hold the uid at all.
type DeliverResult struct {
	UID       string   `json:"uid"`
	Delivered int      `json:"delivered"`
	ConnIDs   []string `json:"conn_ids"`
}

// DeliverResponse answers DeliverRequest, one result per requested uid in request order.
type DeliverResponse struct {
	Results []DeliverResult `json:"results"`
}

// BroadcastRequest asks a node to write Message to every local connection.
type BroadcastRequest struct {
	Message Message `json:"message"`
}

// BroadcastResponse says how many connections were written.
type BroadcastResponse struct {
	Delivered int `json:"delivered"`
}

// KickRequest asks a node to close every local connection of UID.
type KickRequest struct {
	UID    string `json:"uid"`
	Reason string `json:"reason,omitempty"`
}

// KickResponse says how many connections were closed.
type KickResponse struct {
	Closed int `json:"closed"`
}

// Stats describes a node right now.
type Stats struct {
	Node        string `json:"node"`
	Connections int    `json:"connections"`
	Users       int    `json:"users"`
	Draining    bool   `json:"draining"`
	RSSBytes    uint64 `json:"rss_bytes"`
	HeapBytes   uint64 `json:"heap_bytes"`
	Goroutines  int    `json:"goroutines"`
}
