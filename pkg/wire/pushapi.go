package wire

import (
	"encoding/json"
	"net/url"
	"time"
)

// push-route's public push API (DESIGN.md), spoken by business systems, the admin console and the load
// generator with an API key.

// Public push API paths on push-route's public listener.
const (
	PathPush          = "/v1/push"
	PathPushBroadcast = "/v1/broadcast"
)

// PathConnections is the path of uid's connections.
func PathConnections(uid string) string { return "/v1/users/" + url.PathEscape(uid) + "/connections" }

// PushRequest sends Data to every connection of UIDs. With TTLS > 0 the message is stored and stays
// pending per user until acked or expired. ID, when given, makes the call idempotent.
type PushRequest struct {
	UIDs []string        `json:"uids"`
	Data json.RawMessage `json:"data"`
	TTLS int64           `json:"ttl_s"`
	ID   string          `json:"id,omitempty"`
}

// PushResult is what a push did for one uid.
type PushResult struct {
	UID       string `json:"uid"`
	Delivered int    `json:"delivered"`
	Stored    bool   `json:"stored"`
}

// PushResponse answers PushRequest, one result per distinct uid in request order.
type PushResponse struct {
	ID      string       `json:"id"`
	Results []PushResult `json:"results"`
	// Duplicate is true when a call with this id was made before: nothing new was stored or delivered.
	Duplicate bool `json:"duplicate,omitempty"`
}

// PushBroadcastRequest sends Data to every connection on every live node.
type PushBroadcastRequest struct {
	Data json.RawMessage `json:"data"`
}

// PushBroadcastResponse answers PushBroadcastRequest.
type PushBroadcastResponse struct {
	ID        string `json:"id"`
	Delivered int    `json:"delivered"`
}

// Connection is one live connection of a user.
type Connection struct {
	ConnID      string    `json:"conn_id"`
	Node        string    `json:"node"`
	Device      string    `json:"device"`
	ConnectedAt time.Time `json:"connected_at"`
}

// ConnectionsResponse lists a user's connections, oldest first.
type ConnectionsResponse struct {
	UID         string       `json:"uid"`
	Connections []Connection `json:"connections"`
}
