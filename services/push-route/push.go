package main

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/ident"
	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/services/push-route/internal/coalesce"
	"github.com/heraldpush/herald/services/push-route/internal/inbox"
)

// limits are the push API's bounds, all configurable.
type limits struct {
	maxBody int64
	maxData int
	maxUIDs int
	maxTTL  time.Duration
}

// validate checks a push request and returns its uids without repeats, in their order.
func (l limits) validate(req *wire.PushRequest) ([]string, error) {
	switch {
	case len(req.UIDs) == 0:
		return nil, httpapi.Errorf(httpapi.CodeInvalidRequest, "uids must list at least one uid")
	case len(req.UIDs) > l.maxUIDs:
		return nil, httpapi.Errorf(httpapi.CodeInvalidRequest, "at most %d uids per call", l.maxUIDs)
	}
	if err := l.checkData(req.Data); err != nil {
		return nil, err
	}
	if req.TTLS < 0 || time.Duration(req.TTLS)*time.Second > l.maxTTL {
		return nil, httpapi.Errorf(httpapi.CodeInvalidRequest, "ttl_s must be between 0 and %d", int64(l.maxTTL/time.Second))
	}
	if req.ID != "" {
		if err := ident.Check("id", req.ID); err != nil {
			return nil, httpapi.Errorf(httpapi.CodeInvalidRequest, "%v", err)
		}
	}
	return l.checkUIDs(req.UIDs)
}

// checkUIDs checks a request's uids and returns them without repeats, in their order.
func (l limits) checkUIDs(list []string) ([]string, error) {
	switch {
	case len(list) == 0:
		return nil, httpapi.Errorf(httpapi.CodeInvalidRequest, "uids must list at least one uid")
	case len(list) > l.maxUIDs:
		return nil, httpapi.Errorf(httpapi.CodeInvalidRequest, "at most %d uids per call", l.maxUIDs)
	}
	for _, uid := range list {
		if err := ident.Check("uid", uid); err != nil {
			return nil, httpapi.Errorf(httpapi.CodeInvalidRequest, "%v", err)
		}
	}
	if len(list) <= 16 && !hasRepeats(list) {
		return list, nil
	}
	uids := make([]string, 0, len(list))
	seen := make(map[string]bool, len(list))
	for _, uid := range list {
		if !seen[uid] {
			seen[uid] = true
			uids = append(uids, uid)
		}
	}
	return uids, nil
}

// hasRepeats compares every pair: for the few uids most pushes name, cheaper than building a map.
func hasRepeats(list []string) bool {
	for i := range list {
		if slices.Contains(list[:i], list[i]) {
			return true
		}
	}
	return false
}

func (l limits) checkData(data json.RawMessage) error {
	switch {
	case len(data) == 0 || string(data) == "null":
		return httpapi.Errorf(httpapi.CodeInvalidRequest, "data is required (any JSON value but null)")
	case len(data) > l.maxData:
		return &httpapi.Error{Code: httpapi.CodeBodyTooLarge, Message: "data is larger than the limit of " + strconv.Itoa(l.maxData) + " bytes"}
	}
	return nil
}

func handlePush(logger *slog.Logger, l limits, d *dispatcher, store *inbox.Store, marks *marker, redo *redeliverer, m *metrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		trace := traceID(ctx)
		var req wire.PushRequest
		if err := httpapi.DecodeStrict(w, r, l.maxBody, &req); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		uids, err := l.validate(&req)
		if err != nil {
			httpapi.WriteError(w, err)
			return
		}
		now := time.Now()
		msg := wire.Message{ID: req.ID, Data: req.Data, TS: now.UnixMilli()}
		if msg.ID == "" {
			msg.ID = ulid.Make().String()
		}
		ttl := time.Duration(req.TTLS) * time.Second

		// Stored before any delivery: once this returns, a crash loses nothing the 200 promises.
		if req.ID != "" || ttl > 0 {
			err := store.Save(ctx, msg, uids, ttl, now)
			if errors.Is(err, inbox.ErrDuplicate) {
				respondDuplicate(w, r, logger, store, msg.ID, uids, now)
				return
			}
			if err != nil {
				logger.Error("store message", "id", msg.ID, "err", err, "trace_id", trace)
				httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeUnavailable, "message store unavailable, retry later"))
				return
			}
			if ttl > 0 {
				// After the save, before the lookup: a device that registers after our lookup
				// sees the mark and asks for the message.
				marks.mark(ctx, uids, ttl)
			}
		}

		delivered, failed, err := d.deliver(ctx, trace, msg, uids)
		if err != nil {
			why := "route directory unavailable, retry later"
			if errors.Is(err, coalesce.ErrFull) || errors.Is(err, coalesce.ErrExpired) {
				// More lookups waiting than -lookup-queue: load, not a Redis failure.
				why = "push-route is overloaded, retry later"
				logger.Warn("route lookup queue full", "id", msg.ID, "err", err, "trace_id", trace)
			} else {
				logger.Error("route lookup", "id", msg.ID, "err", err, "trace_id", trace)
			}
			if ttl == 0 {
				httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeUnavailable, "%s", why))
				return
			}
			// The message is stored: connected devices get it once the routes can be read again,
			// the others when they next connect.
			delivered, failed = map[string]int{}, uids
		}
		if ttl > 0 {
			redo.add(msg, failed, trace, ttl)
		}
		resp := wire.PushResponse{ID: msg.ID, Results: make([]wire.PushResult, len(uids))}
		total := 0
		for i, uid := range uids {
			resp.Results[i] = wire.PushResult{UID: uid, Delivered: delivered[uid], Stored: ttl > 0}
			total += delivered[uid]
		}
		m.pushes.Inc()
		m.deliveries.Add(float64(total))
		// Debug, not info: at thousands of pushes a second a line each costs more than the push;
		// errors and summaries stay at info, and an operator following one message turns debug on.
		logger.Debug("push", "id", msg.ID, "uids", len(uids), "delivered", total, "ttl_s", req.TTLS, "trace_id", trace)
		httpapi.WriteJSON(w, http.StatusOK, resp)
	})
}

func respondDuplicate(w http.ResponseWriter, r *http.Request, logger *slog.Logger, store *inbox.Store, id string, uids []string, now time.Time) {
	pending, err := store.PendingFor(r.Context(), id, now)
	if err != nil {
		logger.Error("pending for duplicate", "id", id, "err", err)
		pending = map[string]bool{}
	}
	resp := wire.PushResponse{ID: id, Duplicate: true, Results: make([]wire.PushResult, len(uids))}
	for i, uid := range uids {
		resp.Results[i] = wire.PushResult{UID: uid, Stored: pending[uid]}
	}
	logger.Info("duplicate push ignored", "id", id, "trace_id", traceID(r.Context()))
	httpapi.WriteJSON(w, http.StatusOK, resp)
}

func handleBroadcast(logger *slog.Logger, l limits, d *dispatcher, m *metrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req wire.PushBroadcastRequest
		if err := httpapi.DecodeStrict(w, r, l.maxBody, &req); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		if err := l.checkData(req.Data); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		msg := wire.Message{ID: ulid.Make().String(), Data: req.Data, TS: time.Now().UnixMilli()}
		n := d.broadcast(r.Context(), traceID(r.Context()), msg)
		m.broadcasts.Inc()
		m.deliveries.Add(float64(n))
		logger.Info("broadcast", "id", msg.ID, "delivered", n, "trace_id", traceID(r.Context()))
		httpapi.WriteJSON(w, http.StatusOK, wire.PushBroadcastResponse{ID: msg.ID, Delivered: n})
	})
}

func handleConnections(logger *slog.Logger, dir routeDirectory, nodes nodeResolver) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uid := r.PathValue("uid")
		if err := ident.Check("uid", uid); err != nil {
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeInvalidRequest, "%v", err))
			return
		}
		found, err := dir.Lookup(r.Context(), []string{uid})
		if err != nil {
			logger.Error("route lookup", "err", err)
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeUnavailable, "route directory unavailable, retry later"))
			return
		}
		resp := wire.ConnectionsResponse{UID: uid, Connections: []wire.Connection{}}
		for _, rt := range found[uid] {
			if _, state := nodes.resolve(rt.Node); state != nodeLive {
				continue // a dead node's route, swept soon
			}
			resp.Connections = append(resp.Connections, wire.Connection{ConnID: rt.ConnID, Node: rt.Node, Device: rt.Device, ConnectedAt: rt.ConnectedAt.UTC()})
		}
		slices.SortFunc(resp.Connections, func(a, b wire.Connection) int { return a.ConnectedAt.Compare(b.ConnectedAt) })
		httpapi.WriteJSON(w, http.StatusOK, resp)
	})
}
