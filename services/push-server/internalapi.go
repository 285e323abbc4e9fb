package main

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/heraldpush/herald/pkg/health"
	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/ident"
	"github.com/heraldpush/herald/pkg/service"
	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/services/push-server/internal/wsconn"
	"github.com/prometheus/client_golang/prometheus"
)

// newInternalServer is the node's internal API, for push-route and admin, plus metrics and probes.
// Every endpoint is listed here.
func newInternalServer(s *server, reg *prometheus.Registry, ready []health.Check) http.Handler {
	guard := func(route string, h http.Handler) http.Handler {
		return s.metrics.http.Wrap(s.logger, route, httpapi.RequireSecret(wire.SecretHeader, s.cfg.InternalSecret, h))
	}
	mux := service.OpsMux(reg, ready)
	mux.Handle("POST "+wire.PathDeliver, guard("deliver", handleDeliver(s)))
	mux.Handle("POST "+wire.PathDeliverBatch, guard("deliver_batch", handleDeliverBatch(s)))
	mux.Handle("POST "+wire.PathDeliverStream, guard("deliver_stream", handleDeliverStream(s)))
	mux.Handle("POST "+wire.PathBroadcast, guard("broadcast", handleBroadcast(s)))
	mux.Handle("POST "+wire.PathKick, guard("kick", handleKick(s)))
	mux.Handle("GET "+wire.PathStats, guard("stats", handleStats(s)))
	mux.Handle("POST "+wire.PathDrain, guard("drain", handleDrain(s)))
	mux.Handle("POST "+wire.PathUndrain, guard("undrain", handleUndrain(s)))
	mux.Handle("POST "+wire.PathRoomPush, guard("room_push", handleRoomPush(s)))
	mux.Handle("POST "+wire.PathRoomJoin, guard("room_join", handleRoomMembers(s, true)))
	mux.Handle("POST "+wire.PathRoomLeave, guard("room_leave", handleRoomMembers(s, false)))
	return mux
}

// prepare encodes m's push frame once for all its recipients.
func prepare(m wire.Message) (*wsconn.Prepared, error) {
	b, err := m.AppendPushFrame(make([]byte, wsconn.HeadRoom, wsconn.HeadRoom+m.PushFrameLen()))
	if m.ID == "" || len(m.Data) == 0 || err != nil {
		return nil, httpapi.Errorf(httpapi.CodeInvalidRequest, "message needs an id and JSON data")
	}
	return wsconn.PrepareInPlace(b), nil
}

func handleDeliver(s *server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req wire.DeliverRequest
		if err := httpapi.DecodeJSON(w, r, wire.MaxInternalBody, &req); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		resp, err := s.deliver(wire.DeliverItem{Message: req.Message, UIDs: req.UIDs, TraceID: r.Header.Get(wire.TraceHeader)})
		if err != nil {
			httpapi.WriteError(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, resp)
	})
}

func handleDeliverBatch(s *server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		binary := r.Header.Get("Content-Type") == wire.ContentTypeProtobuf
		var items []wire.DeliverItem
		if binary {
			body, err := httpapi.ReadBody(w, r, wire.MaxInternalBody)
			if err == nil {
				items, err = wire.ParseDeliverBatchRequest(body)
				if err != nil {
					err = httpapi.Errorf(httpapi.CodeInvalidRequest, "%v", err)
				}
			}
			if err != nil {
				httpapi.WriteError(w, err)
				return
			}
		} else {
			var req wire.DeliverBatchRequest
			if err := httpapi.DecodeJSON(w, r, wire.MaxInternalBody, &req); err != nil {
				httpapi.WriteError(w, err)
				return
			}
			items = req.Items
		}
		answers := s.deliverItems(items)
		if !binary {
			httpapi.WriteJSON(w, http.StatusOK, wire.DeliverBatchResponse{Items: answers})
			return
		}
		w.Header().Set("Content-Type", wire.ContentTypeProtobuf)
		w.Write(wire.AppendDeliverBatchResponse(nil, answers))
	})
}

// deliverItems delivers a batch's items and answers each, in order.
func (s *server) deliverItems(items []wire.DeliverItem) []wire.DeliverResponse {
	answers := make([]wire.DeliverResponse, len(items))
	for i, item := range items {
		res, err := s.deliver(item)
		if err != nil {
			// One malformed message must not cost the others in the batch their delivery.
			res = wire.DeliverResponse{Results: []wire.DeliverResult{}, Error: itemError(err)}
		}
		answers[i] = res
	}
	return answers
}

// itemError is the answer to one refused item of a batch, as an error body would carry it.
func itemError(err error) *wire.ErrorDetail {
	var apiErr *httpapi.Error
	if errors.As(err, &apiErr) {
		return &wire.ErrorDetail{Code: apiErr.Code, Message: apiErr.Message}
	}
	return &wire.ErrorDetail{Code: httpapi.CodeInternal, Message: "internal error"}
}

// deliver writes item's message to every local connection of its uids. Each result lists the
// connections the node holds for that uid, so push-route can tell which of its routes are stale.
func (s *server) deliver(item wire.DeliverItem) (wire.DeliverResponse, error) {
	p, err := prepare(item.Message)
	if err != nil {
		return wire.DeliverResponse{}, err
	}
	resp := wire.DeliverResponse{Results: make([]wire.DeliverResult, len(item.UIDs))}
	written := 0
	for i, uid := range item.UIDs {
		conns := s.hub.Conns(uid)
		res := wire.DeliverResult{UID: uid, ConnIDs: make([]string, 0, len(conns))}
		for _, c := range conns {
			res.ConnIDs = append(res.ConnIDs, s.connID(c))
			if c.Write(p) == nil {
				res.Delivered++
			}
		}
		written += res.Delivered
		resp.Results[i] = res
	}
	s.metrics.pushed.Add(float64(written))
	// Debug, not info: at tens of thousands of pushes a second a line each costs real CPU; an
	// operator following one message turns it on.
	s.logger.Debug("deliver", "id", item.Message.ID, "uids", len(item.UIDs), "written", written, "trace_id", item.TraceID)
	return resp, nil
}

func handleBroadcast(s *server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req wire.BroadcastRequest
		if err := httpapi.DecodeJSON(w, r, wire.MaxInternalBody, &req); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		p, err := prepare(req.Message)
		if err != nil {
			httpapi.WriteError(w, err)
			return
		}
		n := s.broadcast(p)
		s.metrics.pushed.Add(float64(n))
		s.logger.Info("broadcast", "id", req.Message.ID, "written", n, "trace_id", r.Header.Get(wire.TraceHeader))
		httpapi.WriteJSON(w, http.StatusOK, wire.BroadcastResponse{Delivered: n})
	})
}

// broadcast writes p to every connection, the shards in parallel, and returns how many took it.
func (s *server) broadcast(p *wsconn.Prepared) int {
	var ok atomic.Int64
	s.hub.Each(runtime.GOMAXPROCS(0), func(c *wsconn.Conn) {
		if c.Write(p) == nil {
			ok.Add(1)
		}
	})
	return int(ok.Load())
}

func handleKick(s *server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req wire.KickRequest
		if err := httpapi.DecodeJSON(w, r, wire.MaxInternalBody, &req); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		if err := ident.Check("uid", req.UID); err != nil {
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeInvalidRequest, "%v", err))
			return
		}
		reason := req.Reason
		if reason == "" {
			reason = "kicked by an operator"
		}
		conns := s.hub.Conns(req.UID)
		for _, c := range conns {
			c.Close(wire.ClosePolicy, reason)
		}
		s.logger.Info("kicked user", "uid", req.UID, "connections", len(conns), "reason", reason)
		httpapi.WriteJSON(w, http.StatusOK, wire.KickResponse{Closed: len(conns)})
	})
}

func handleStats(s *server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, s.stats())
	})
}

func (s *server) stats() wire.Stats {
	conns, users := s.hub.Count()
	top, rooms, members := s.rooms.Largest(20)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return wire.Stats{
		Node:        s.cfg.NodeID,
		Connections: conns,
		Users:       users,
		Draining:    s.draining.Load(),
		RSSBytes:    residentBytes(),
		HeapBytes:   ms.HeapAlloc,
		Goroutines:  runtime.NumGoroutine(),
		Rooms:       rooms,
		RoomMembers: members,
		TopRooms:    top,
	}
}

// handleRoomPush hands a room message to the room's members here.
func handleRoomPush(s *server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req wire.NodeRoomPushRequest
		if err := httpapi.DecodeJSON(w, r, wire.MaxInternalBody, &req); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		if err := ident.Check("room", req.Room); err != nil {
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeInvalidRequest, "%v", err))
			return
		}
		m := req.Message
		if m.ID == "" || len(m.Data) == 0 || !json.Valid(m.Data) {
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeInvalidRequest, "message needs an id and JSON data"))
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, wire.NodeRoomPushResponse{Members: s.fanout.Publish(req.Room, m)})
	})
}

// handleRoomMembers joins every local connection of the uids to the room, or takes them out.
func handleRoomMembers(s *server, join bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req wire.RoomMembersRequest
		if err := httpapi.DecodeJSON(w, r, wire.MaxInternalBody, &req); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		if err := ident.Check("room", req.Room); err != nil {
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeInvalidRequest, "%v", err))
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, wire.RoomMembersResponse{Connections: s.joinUsers(req.Room, req.UIDs, join)})
	})
}

// residentBytes reads the process's resident set size from /proc (0 where there is none).
func residentBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, _ := strconv.ParseUint(f[1], 10, 64)
	return pages * uint64(os.Getpagesize())
}

// handleDrain starts a drain and answers at once; the node then stays up, drained, until it is
// undrained or stopped.
func handleDrain(s *server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		go s.drain(s.cfg.ShutdownTimeout)
		httpapi.WriteJSON(w, http.StatusAccepted, map[string]string{"status": "draining"})
	})
}

func handleUndrain(s *server) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ok, err := s.undrain()
		switch {
		case !ok:
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeConflict, "this node is not draining"))
		case err != nil:
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeUnavailable, "taking connections again, but zookeeper did not take the change yet (it is retried): %v", err))
		default:
			httpapi.WriteJSON(w, http.StatusOK, map[string]string{"status": "live"})
		}
	})
}

func readyChecks(s *server, zkCheck func(context.Context) error) []health.Check {
	return []health.Check{
		{Name: "accepting", Probe: func(context.Context) error {
			if s.draining.Load() {
				return errors.New("draining: new connections are refused")
			}
			return nil
		}},
		{Name: "redis", Probe: func(ctx context.Context) error { return s.routes.store.Ping(ctx) }},
		// Ready only once announced: a device let in before the node's znode exists would have its
		// route taken for a dead node's by push-route (and its pushes reported undelivered).
		{Name: "zookeeper", Probe: func(ctx context.Context) error {
			if s.registration.Load() == nil {
				return errors.New("not registered in zookeeper yet")
			}
			return zkCheck(ctx)
		}},
		{Name: "kafka", Probe: s.producer.Ping},
	}
}
