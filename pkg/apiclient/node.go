package apiclient

import (
	"context"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/heraldpush/herald/pkg/wire"
)

// maxNodeAnswer bounds a push-server's answer: a deliver-batch answer lists the connection ids of at
// most a few thousand uids.
const maxNodeAnswer = 16 << 20

// NodeClient calls the internal API of push-servers (wire.PathDeliverBatch and the rest), each method
// on the node whose internal URL it is given. One NodeClient serves every node; Close it to close the
// deliver streams it keeps.
type NodeClient struct {
	c       caller
	streams *streamPool
}

// NewNodeClient returns a client that calls push-servers through hc with the internal secret.
func NewNodeClient(hc *http.Client, secret string) *NodeClient {
	return &NodeClient{
		c:       caller{hc: hc, authHeader: wire.SecretHeader, authValue: secret, description: "push-server"},
		streams: &streamPool{secret: secret},
	}
}

// Close closes the idle deliver streams, and the ones in use once their batch is answered.
func (n *NodeClient) Close() { n.streams.close() }

// BatchForm is how DeliverBatch hands a batch to a node.
type BatchForm int

const (
	BatchJSON   BatchForm = iota // a call per batch in JSON, which every node reads
	BatchBinary                  // a call per batch in wire.ContentTypeProtobuf
	BatchStream                  // a frame on a deliver stream (wire.PathDeliverStream)
)

// BatchFormFor is the cheapest form among the encodings a node lists in its ZooKeeper entry, for its
// internal URL: deliver streams are plain HTTP/1.1, so a node behind https gets calls, which go through
// the http.Client's transport.
func BatchFormFor(encodings []string, nodeURL string) BatchForm {
	switch {
	case slices.Contains(encodings, wire.ContentTypeBatchStream) && strings.HasPrefix(nodeURL, "http://"):
		return BatchStream
	case slices.Contains(encodings, wire.ContentTypeProtobuf):
		return BatchBinary
	}
	return BatchJSON
}

func (f BatchForm) String() string {
	switch f {
	case BatchBinary:
		return "binary"
	case BatchStream:
		return "stream"
	}
	return "json"
}

// DeliverBatch hands items to the node and returns one answer per item, in order. An item the node
// refused carries its Error; the others are delivered regardless. form must be one the node reads
// (BatchFormFor its encodings).
func (n *NodeClient) DeliverBatch(ctx context.Context, nodeURL string, form BatchForm, items []wire.DeliverItem) ([]wire.DeliverResponse, error) {
	url := joinURL(nodeURL, wire.PathDeliverBatch)
	var answers []wire.DeliverResponse
	switch form {
	case BatchStream:
		var err error
		if answers, err = n.streams.deliver(ctx, nodeURL, items); err != nil {
			return nil, fmt.Errorf("push-server %s: %w", wire.PathDeliverStream, err)
		}
	case BatchBinary:
		b, err := n.c.callBinary(ctx, url, "", wire.ContentTypeProtobuf, wire.AppendDeliverBatchRequest(nil, items), maxNodeAnswer)
		if err == nil {
			if answers, err = wire.ParseDeliverBatchResponse(b); err != nil {
				err = fmt.Errorf("push-server %s: %w", wire.PathDeliverBatch, err)
			}
		}
		if err != nil {
			return nil, err
		}
	default:
		var resp wire.DeliverBatchResponse
		if err := n.c.call(ctx, http.MethodPost, url, "", wire.DeliverBatchRequest{Items: items}, &resp, maxNodeAnswer); err != nil {
			return nil, err
		}
		answers = resp.Items
	}
	if len(answers) != len(items) {
		return nil, fmt.Errorf("push-server %s: %d answers for %d items", wire.PathDeliverBatch, len(answers), len(items))
	}
	for i, item := range answers {
		if item.Error == nil && len(item.Results) != len(items[i].UIDs) {
			return nil, fmt.Errorf("push-server %s: item %d: %d results for %d uids", wire.PathDeliverBatch, i, len(item.Results), len(items[i].UIDs))
		}
	}
	return answers, nil
}

// Broadcast writes m to every connection of the node and returns how many took it.
func (n *NodeClient) Broadcast(ctx context.Context, nodeURL, traceID string, m wire.Message) (int, error) {
	var resp wire.BroadcastResponse
	err := n.c.call(ctx, http.MethodPost, joinURL(nodeURL, wire.PathBroadcast), traceID, wire.BroadcastRequest{Message: m}, &resp, maxNodeAnswer)
	return resp.Delivered, err
}

// RoomPush hands a room message to the node for the room's members there, and returns how many
// members the node holds.
func (n *NodeClient) RoomPush(ctx context.Context, nodeURL, traceID, room string, m wire.Message) (int, error) {
	var resp wire.NodeRoomPushResponse
	err := n.c.call(ctx, http.MethodPost, joinURL(nodeURL, wire.PathRoomPush), traceID, wire.NodeRoomPushRequest{Room: room, Message: m}, &resp, maxNodeAnswer)
	return resp.Members, err
}

// RoomMembers puts every connection of uids on the node into the room (join) or takes them out, and
// returns how many connections it changed.
func (n *NodeClient) RoomMembers(ctx context.Context, nodeURL, room string, uids []string, join bool) (int, error) {
	path := wire.PathRoomLeave
	if join {
		path = wire.PathRoomJoin
	}
	var resp wire.RoomMembersResponse
	err := n.c.call(ctx, http.MethodPost, joinURL(nodeURL, path), "", wire.RoomMembersRequest{Room: room, UIDs: uids}, &resp, maxNodeAnswer)
	return resp.Connections, err
}

// Kick closes every connection of uid on the node and returns how many it closed.
func (n *NodeClient) Kick(ctx context.Context, nodeURL, uid, reason string) (int, error) {
	var resp wire.KickResponse
	err := n.c.call(ctx, http.MethodPost, joinURL(nodeURL, wire.PathKick), "", wire.KickRequest{UID: uid, Reason: reason}, &resp, maxNodeAnswer)
	return resp.Closed, err
}

// Stats reads the node's current figures.
func (n *NodeClient) Stats(ctx context.Context, nodeURL string) (wire.Stats, error) {
	var st wire.Stats
	err := n.c.call(ctx, http.MethodGet, joinURL(nodeURL, wire.PathStats), "", nil, &st, maxNodeAnswer)
	return st, err
}

// Drain asks the node to drain: it leaves the ring, tells its clients to reconnect and closes them in
// paced batches, then stays up, refusing connections, until it is stopped or undrained. It returns
// once the node has accepted.
func (n *NodeClient) Drain(ctx context.Context, nodeURL string) error {
	return n.c.call(ctx, http.MethodPost, joinURL(nodeURL, wire.PathDrain), "", struct{}{}, nil, maxNodeAnswer)
}

// Undrain puts a draining node back into the ring: it takes connections again and auth hands it out.
func (n *NodeClient) Undrain(ctx context.Context, nodeURL string) error {
	return n.c.call(ctx, http.MethodPost, joinURL(nodeURL, wire.PathUndrain), "", struct{}{}, nil, maxNodeAnswer)
}
