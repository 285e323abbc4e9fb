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

// PathRoom is the path of a room's API (GET: its members; /push, /join, /leave below it).
func PathRoom(room string) string { return "/v1/rooms/" + url.PathEscape(room) }

// RoomPushRequest publishes Data to everyone in a room. ID is the caller's optional message id.
type RoomPushRequest struct {
	Data json.RawMessage `json:"data"`
	ID   string          `json:"id,omitempty"`
}

// RoomPushResponse says which id the message got, how many nodes had members and how many members
// there were.
type RoomPushResponse struct {
	ID      string `json:"id"`
	Nodes   int    `json:"nodes"`
	Members int    `json:"members"`
}

// RoomInfo is a room's members, per node and in all.
type RoomInfo struct {
	Room    string     `json:"room"`
	Members int        `json:"members"`
	Nodes   []RoomNode `json:"nodes"`
}

// RoomNode is one node's share of a room.
type RoomNode struct {
	Node    string `json:"node"`
	Members int    `json:"members"`
}

// RoomUsersRequest joins (or removes) every current connection of UIDs to (or from) a room.
type RoomUsersRequest struct {
	UIDs []string `json:"uids"`
}

// RoomUsersResponse counts the connections that joined or left.
type RoomUsersResponse struct {
	Connections int `json:"connections"`
}

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
