package wire

// The push-server's internal API (DESIGN.md: "deliver a message to local users, broadcast, kick a
// user, node stats"), spoken by push-route and admin. Every call carries the shared internal secret in
// the header named by SecretHeader.

// SecretHeader carries the shared internal secret on internal calls.
const SecretHeader = "X-Herald-Internal-Secret"

// Internal API paths on a push-server's internal listener.
const (
	PathDeliver = "/internal/v1/deliver"
	// PathDeliverBatch takes several deliveries in one call (DeliverBatchRequest).
	PathDeliverBatch = "/internal/v1/deliver-batch"
	PathBroadcast    = "/internal/v1/broadcast"
	PathKick         = "/internal/v1/kick"
	PathStats        = "/internal/v1/stats"
	PathDrain        = "/internal/v1/drain"
	PathUndrain      = "/internal/v1/undrain"
	PathRoomPush     = "/internal/v1/room-push"
	PathRoomJoin     = "/internal/v1/room-join"
	PathRoomLeave    = "/internal/v1/room-leave"
)

// MaxInternalBody is the largest internal request body a push-server accepts. push-route keeps its
// deliver-batch calls under it (-batch-max-bytes); a single deliver call (up to 1,000 uids and 64 KiB
// of data by default) is far below it.
const MaxInternalBody = 4 << 20

// DeliverRequest asks a node to write Message to every local connection of each uid. The node serves
// it as a deliver-batch of one item; it is kept for operators' scripts.
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
	// Error is set, and Results empty, when a batch item was refused (a malformed message); the call
	// and its other items still succeed.
	Error *ErrorDetail `json:"error,omitempty"`
}

// DeliverBatchRequest carries several deliveries to one node in one call: push-route gathers the
// pushes bound for a node while its earlier calls to that node are in flight, so under load one
// request, one write and one wake-up serve many messages.
type DeliverBatchRequest struct {
	Items []DeliverItem `json:"items"`
}

// DeliverItem is one message for some uids of the node. TraceID follows the message into the node's log.
type DeliverItem struct {
	Message Message  `json:"message"`
	UIDs    []string `json:"uids"`
	TraceID string   `json:"trace_id,omitempty"`
}

// DeliverBatchResponse answers DeliverBatchRequest, one response per item in request order.
type DeliverBatchResponse struct {
	Items []DeliverResponse `json:"items"`
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
	Rooms       int    `json:"rooms"`        // rooms with members here
	RoomMembers int    `json:"room_members"` // memberships of connections here, summed over rooms
	// TopRooms are the node's largest rooms (at most 20), largest first.
	TopRooms []RoomSize `json:"top_rooms,omitempty"`
}

// RoomSize is a room and how many members it has (on one node, or in all).
type RoomSize struct {
	Room    string `json:"room"`
	Members int    `json:"members"`
}

// NodeRoomPushRequest hands a room message to a node, for the room's members there.
type NodeRoomPushRequest struct {
	Room    string  `json:"room"`
	Message Message `json:"message"`
}

// NodeRoomPushResponse says how many members of the room the node holds.
type NodeRoomPushResponse struct {
	Members int `json:"members"`
}

// RoomMembersRequest puts every local connection of the uids into the room, or takes them out.
type RoomMembersRequest struct {
	Room string   `json:"room"`
	UIDs []string `json:"uids"`
}

// RoomMembersResponse counts the connections that joined or left.
type RoomMembersResponse struct {
	Connections int `json:"connections"`
}
