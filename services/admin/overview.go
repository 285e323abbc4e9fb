package main

import (
	"context"
	"database/sql"
	"log/slog"
	"net/http"
	"time"

	"github.com/heraldpush/herald/pkg/httpapi"
)

// overview is the cluster at a glance.
type overview struct {
	Nodes  []nodeStatus `json:"nodes"`
	Totals totals       `json:"totals"`
	// Rates are null until two samples of the push-servers' counters were taken.
	Rates *rates `json:"rates"`
	// UpstreamLastMinute counts archived upstream messages whose ts is in the last 60 s; null when
	// MySQL did not answer.
	UpstreamLastMinute *int64 `json:"upstream_last_minute"`
}

// totals sum the nodes that answered. A user with devices on two nodes counts on both (auth's ring
// puts one user's devices on one node, so that is rare).
type totals struct {
	Nodes       int `json:"nodes"`
	Live        int `json:"live"`
	Draining    int `json:"draining"`
	Unreachable int `json:"unreachable"`
	Connections int `json:"connections"`
	Users       int `json:"users"`
}

func gatherOverview(ctx context.Context, logger *slog.Logger, db *sql.DB, nodes *cluster) overview {
	o := overview{Nodes: nodes.status(ctx)}
	o.Totals.Nodes = len(o.Nodes)
	for _, n := range o.Nodes {
		switch n.State {
		case "live":
			o.Totals.Live++
		case "draining":
			o.Totals.Draining++
		default:
			o.Totals.Unreachable++
		}
		if n.Stats != nil {
			o.Totals.Connections += n.Stats.Connections
			o.Totals.Users += n.Stats.Users
		}
	}
	if r := nodes.currentRates(); r.Known {
		o.Rates = &r
	}
	var count int64
	since := time.Now().Add(-time.Minute).UnixMilli()
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM upstream_messages WHERE ts >= ?", since).Scan(&count); err != nil {
		logger.Warn("count recent upstream messages", "err", err)
	} else {
		o.UpstreamLastMinute = &count
	}
	return o
}

func handleOverviewPage(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		render(w, r, http.StatusOK, "overview", view{Title: "Overview", Nav: "overview", Data: gatherOverview(r.Context(), logger, d.db, d.nodes)})
	})
}

func handleOverviewAPI(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, gatherOverview(r.Context(), logger, d.db, d.nodes))
	})
}

func handleNodesPage(d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		render(w, r, http.StatusOK, "nodes", view{Title: "Nodes", Nav: "nodes", Data: d.nodes.status(r.Context())})
	})
}

func handleNodesAPI(d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"nodes": d.nodes.status(r.Context())})
	})
}

type drainView struct {
	Node   nodeStatus
	Typed  string
	Status string
	Last   bool // the last push-server taking logins: draining it needs force
}

// handleDrainConfirm is the step before a drain: the node, its load, and a field where the operator
// types the node's id.
func handleDrainConfirm(d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		for _, n := range d.nodes.status(r.Context()) {
			if n.ID == id {
				render(w, r, http.StatusOK, "drain", view{Title: "Drain " + id, Nav: "nodes", Data: drainView{Node: n, Last: d.nodes.lastTakingLogins(id)}})
				return
			}
		}
		renderStatus(w, r, http.StatusNotFound, "Not found", "No live push-server is called "+id+".")
	})
}

func handleDrainPage(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if typed := r.PostFormValue("confirm"); typed != id {
			n, ok := d.nodes.get(id)
			if !ok {
				renderStatus(w, r, http.StatusNotFound, "Not found", "No live push-server is called "+id+".")
				return
			}
			render(w, r, http.StatusBadRequest, "drain", view{
				Title: "Drain " + id, Nav: "nodes", Error: "Type the node's id exactly to confirm.",
				Data: drainView{Node: nodeStatus{Node: n}, Typed: typed, Last: d.nodes.lastTakingLogins(id)},
			})
			return
		}
		if err := drain(r, logger, d, id, r.PostFormValue("force") == "yes"); err != nil {
			render(w, r, statusOf(err), "nodes", view{Title: "Nodes", Nav: "nodes", Error: errText(err), Data: d.nodes.status(r.Context())})
			return
		}
		render(w, r, http.StatusAccepted, "nodes", view{
			Title: "Nodes", Nav: "nodes", Notice: id + " is draining: its clients are told to reconnect elsewhere; it then stays up, taking no connections, until it is undrained or stopped.",
			Data: d.nodes.status(r.Context()),
		})
	})
}

func handleDrainAPI(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := drain(r, logger, d, id, r.URL.Query().Get("force") == "true"); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusAccepted, map[string]string{"node": id, "status": "draining"})
	})
}

// handleUndrainPage puts a draining node back into the ring from the nodes page.
func handleUndrainPage(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := d.nodes.undrain(r.Context(), id); err != nil {
			render(w, r, statusOf(err), "nodes", view{Title: "Nodes", Nav: "nodes", Error: errText(err), Data: d.nodes.status(r.Context())})
			return
		}
		done(logger, d, r, "undrain", "node", id)
		render(w, r, http.StatusOK, "nodes", view{
			Title: "Nodes", Nav: "nodes", Notice: id + " takes connections again and is back in auth's ring.",
			Data: d.nodes.status(r.Context()),
		})
	})
}

func handleUndrainAPI(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.PathValue("id")
		if err := d.nodes.undrain(r.Context(), id); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		done(logger, d, r, "undrain", "node", id)
		httpapi.WriteJSON(w, http.StatusOK, map[string]string{"node": id, "status": "live"})
	})
}

// drain drains node id; force lets it drain the last push-server that takes logins.
func drain(r *http.Request, logger *slog.Logger, d serverDeps, id string, force bool) error {
	if err := d.nodes.drain(r.Context(), id, force); err != nil {
		return err
	}
	done(logger, d, r, "drain", "node", id)
	return nil
}
