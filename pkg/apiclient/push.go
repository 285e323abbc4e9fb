package apiclient

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/heraldpush/herald/pkg/wire"
)

// maxPushAnswer bounds a push API answer: a push's results for up to a few thousand uids.
const maxPushAnswer = 4 << 20

// PushClient calls push-route's public push API with an API key, as a business system does.
type PushClient struct {
	base string
	c    caller
}

// NewPushClient returns a client of the push API at baseURL (push-route's public listener).
func NewPushClient(hc *http.Client, baseURL, apiKey string) *PushClient {
	return &PushClient{base: baseURL, c: caller{hc: hc, authHeader: "Authorization", authValue: "Bearer " + apiKey, description: "push-route"}}
}

// Push sends req.Data to every connection of req.UIDs (POST /v1/push).
func (p *PushClient) Push(ctx context.Context, req wire.PushRequest) (wire.PushResponse, error) {
	var resp wire.PushResponse
	err := p.c.call(ctx, http.MethodPost, joinURL(p.base, wire.PathPush), "", req, &resp, maxPushAnswer)
	return resp, err
}

// Broadcast sends data to every connection on every live node (POST /v1/broadcast).
func (p *PushClient) Broadcast(ctx context.Context, data json.RawMessage) (wire.PushBroadcastResponse, error) {
	var resp wire.PushBroadcastResponse
	err := p.c.call(ctx, http.MethodPost, joinURL(p.base, wire.PathPushBroadcast), "", wire.PushBroadcastRequest{Data: data}, &resp, maxPushAnswer)
	return resp, err
}

// RoomPush sends req.Data to everyone in room (POST /v1/rooms/{room}/push).
func (p *PushClient) RoomPush(ctx context.Context, room string, req wire.RoomPushRequest) (wire.RoomPushResponse, error) {
	var resp wire.RoomPushResponse
	err := p.c.call(ctx, http.MethodPost, joinURL(p.base, wire.PathRoom(room)+"/push"), "", req, &resp, maxPushAnswer)
	return resp, err
}

// Room reads who is in room, per node (GET /v1/rooms/{room}).
func (p *PushClient) Room(ctx context.Context, room string) (wire.RoomInfo, error) {
	var info wire.RoomInfo
	err := p.c.call(ctx, http.MethodGet, joinURL(p.base, wire.PathRoom(room)), "", nil, &info, maxPushAnswer)
	return info, err
}

// Connections lists uid's live connections, oldest first.
func (p *PushClient) Connections(ctx context.Context, uid string) ([]wire.Connection, error) {
	var resp wire.ConnectionsResponse
	err := p.c.call(ctx, http.MethodGet, joinURL(p.base, wire.PathConnections(uid)), "", nil, &resp, maxPushAnswer)
	return resp.Connections, err
}
