package main

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/ident"
	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/services/push-route/internal/inbox"
)

// handleAcks clears what devices acked (push-servers send acks in batches).
func handleAcks(logger *slog.Logger, store *inbox.Store, m *metrics) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var batch wire.AckBatch
		if err := httpapi.DecodeJSON(w, r, 8<<20, &batch); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		if err := store.Ack(r.Context(), batch.Acks); err != nil {
			logger.Error("ack", "err", err)
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeUnavailable, "message store unavailable"))
			return
		}
		m.acks.Add(float64(len(batch.Acks)))
		httpapi.WriteJSON(w, http.StatusOK, map[string]int{"acked": len(batch.Acks)})
	})
}

// handlePending answers a push-server that a device of the user connected: the messages to replay.
func handlePending(logger *slog.Logger, store *inbox.Store, marks pendingMarks) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req wire.PendingRequest
		if err := httpapi.DecodeJSON(w, r, 64<<10, &req); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		if err := ident.Check("uid", req.UID); err != nil {
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeInvalidRequest, "%v", err))
			return
		}
		// Read before the lookup: a message stored after this changes it, and the clear below then
		// leaves the marker in place.
		seen, markErr := marks.PendingMark(r.Context(), req.UID)
		msgs, err := store.Pending(r.Context(), req.UID, time.Now())
		if err != nil {
			logger.Error("pending", "err", err)
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeUnavailable, "message store unavailable"))
			return
		}
		if len(msgs) == 0 && markErr == nil && seen != "" {
			if _, err := marks.ClearPending(r.Context(), req.UID, seen); err != nil {
				logger.Warn("clear pending marker", "uid", req.UID, "err", err) // stale: one more lookup later
			}
		}
		httpapi.WriteJSON(w, http.StatusOK, wire.PendingResponse{Messages: msgs})
	})
}
