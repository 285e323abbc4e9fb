package main

import (
	"context"
	"log/slog"
	"net/http"
	"sort"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/ident"
	"github.com/heraldpush/herald/pkg/routes"
	"github.com/heraldpush/herald/pkg/wire"
)

// The room API: a room message goes to the nodes the Redis room registry names (one round trip) and
// only to those, all in parallel over the same pooled connections as pushes; joins and leaves by the
// business system reach every current connection of its users.

// roomRegistry is where the push-servers record how many members of each room they hold.
type roomRegistry interface {
	RoomNodes(ctx context.Context, room string) (map[string]int, error)
}

var _ roomRegistry = (*routes.Store)(nil)

// roomHistory keeps each room's last messages for members that join again with since.
type roomHistory interface {
	AppendRoomHistory(ctx context.Context, room string, m wire.Message, keep int, ttl time.Duration) error
}

var _ roomHistory = (*routes.Store)(nil)

// roomNodeAPI is the push-servers' room calls.
type roomNodeAPI interface {
	RoomPush(ctx context.Context, nodeURL, traceID, room string, m wire.Message) (int, error)
	RoomMembers(ctx context.Context, nodeURL, room string, uids []string, join bool) (int, error)
}

// rooms serves the room API.
type rooms struct {
	registry roomRegistry
	history  roomHistory
	keep     int           // -room-history: 0 keeps none
	keepFor  time.Duration // -room-history-ttl
	dir      routeDirectory
	nodes    nodeResolver
	api      roomNodeAPI
	timeout  time.Duration
	logger   *slog.Logger
	metrics  *metrics
}

// roomName reads and checks the {room} of the path.
func roomName(r *http.Request) (string, error) {
	room := r.PathValue("room")
	if err := ident.Check("room", room); err != nil {
		return "", httpapi.Errorf(httpapi.CodeInvalidRequest, "%v", err)
	}
	return room, nil
}

// members reads the room's entry in the registry: its live nodes and their member counts.
func (rs *rooms) members(ctx context.Context, room string) (wire.RoomInfo, []string, error) {
	counts, err := rs.registry.RoomNodes(ctx, room)
	if err != nil {
		return wire.RoomInfo{}, nil, httpapi.Errorf(httpapi.CodeUnavailable, "room registry unavailable, retry later")
	}
	info := wire.RoomInfo{Room: room, Nodes: []wire.RoomNode{}}
	var urls []string
	for node, n := range counts {
		nd, state := rs.nodes.resolve(node)
		if state != nodeLive {
			continue // a dead node's entries are swept with its routes
		}
		info.Nodes = append(info.Nodes, wire.RoomNode{Node: node, Members: n})
		info.Members += n
		urls = append(urls, nd.InternalURL)
	}
	sort.Slice(info.Nodes, func(i, j int) bool { return info.Nodes[i].Node < info.Nodes[j].Node })
	return info, urls, nil
}

func (rs *rooms) handleInfo(w http.ResponseWriter, r *http.Request) {
	room, err := roomName(r)
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	info, _, err := rs.members(r.Context(), room)
	if err != nil {
		httpapi.WriteError(w, err)
		return
	}
	httpapi.WriteJSON(w, http.StatusOK, info)
}

func (rs *rooms) handlePush(l limits) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		room, err := roomName(r)
		if err != nil {
			httpapi.WriteError(w, err)
			return
		}
		var req wire.RoomPushRequest
		if err := httpapi.DecodeStrict(w, r, l.maxBody, &req); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		if err := l.checkData(req.Data); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		msg := wire.Message{ID: req.ID, Data: req.Data, TS: time.Now().UnixMilli()}
		if msg.ID == "" {
			msg.ID = ulid.Make().String()
		} else if err := ident.Check("id", msg.ID); err != nil {
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeInvalidRequest, "%v", err))
			return
		}
		if rs.keep > 0 {
			// Before any member can see it: a member joining again with since finds it either in
			// the history or live, never in neither.
			if err := rs.history.AppendRoomHistory(r.Context(), room, msg, rs.keep, rs.keepFor); err != nil {
				rs.metrics.roomHistoryFailures.Inc()
				rs.logger.Warn("room message not kept in the history: members joining again may miss it", "room", room, "id", msg.ID, "err", err)
			}
		}
		_, urls, err := rs.members(r.Context(), room)
		if err != nil {
			httpapi.WriteError(w, err)
			return
		}
		trace := traceID(r.Context())
		nodes, members := rs.each(r.Context(), urls, func(ctx context.Context, url string) (int, error) {
			return rs.api.RoomPush(ctx, url, trace, room, msg)
		})
		rs.metrics.roomPushes.Inc()
		rs.logger.Debug("room push", "room", room, "id", msg.ID, "nodes", nodes, "members", members, "trace_id", trace)
		httpapi.WriteJSON(w, http.StatusOK, wire.RoomPushResponse{ID: msg.ID, Nodes: nodes, Members: members})
	}
}

// handleUsers joins every current connection of the uids to the room (join), or takes them out.
func (rs *rooms) handleUsers(l limits, join bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		room, err := roomName(r)
		if err != nil {
			httpapi.WriteError(w, err)
			return
		}
		var req wire.RoomUsersRequest
		if err := httpapi.DecodeStrict(w, r, l.maxBody, &req); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		uids, err := l.checkUIDs(req.UIDs)
		if err != nil {
			httpapi.WriteError(w, err)
			return
		}
		found, err := rs.dir.Lookup(r.Context(), uids)
		if err != nil {
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeUnavailable, "routes unavailable, retry later"))
			return
		}
		byNode := map[string][]string{}
		for uid, rts := range found {
			seen := map[string]bool{}
			for _, rt := range rts {
				if !seen[rt.Node] {
					seen[rt.Node] = true
					byNode[rt.Node] = append(byNode[rt.Node], uid)
				}
			}
		}
		var urls []string
		users := map[string][]string{}
		for node, us := range byNode {
			if nd, state := rs.nodes.resolve(node); state == nodeLive {
				urls = append(urls, nd.InternalURL)
				users[nd.InternalURL] = us
			}
		}
		_, conns := rs.each(r.Context(), urls, func(ctx context.Context, url string) (int, error) {
			return rs.api.RoomMembers(ctx, url, room, users[url], join)
		})
		httpapi.WriteJSON(w, http.StatusOK, wire.RoomUsersResponse{Connections: conns})
	}
}

// each calls every node in parallel and returns how many answered and the sum of their answers.
func (rs *rooms) each(ctx context.Context, urls []string, call func(ctx context.Context, url string) (int, error)) (answered, sum int) {
	ctx, cancel := context.WithTimeout(ctx, rs.timeout)
	defer cancel()
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, url := range urls {
		wg.Go(func() {
			n, err := call(ctx, url)
			if err != nil {
				rs.logger.Warn("room call to push-server failed", "node_url", url, "err", err, "trace_id", traceID(ctx))
				return
			}
			mu.Lock()
			answered++
			sum += n
			mu.Unlock()
		})
	}
	wg.Wait()
	return answered, sum
}
