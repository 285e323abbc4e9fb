package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/ident"
	"github.com/heraldpush/herald/pkg/wire"
)

// maxPendingShown bounds the pending messages a lookup lists.
const maxPendingShown = 100

// userInfo is everything the console knows about one uid.
type userInfo struct {
	UID         string            `json:"uid"`
	Account     *accountInfo      `json:"account"` // null: no password account (a user of a backend's API key)
	Connections []wire.Connection `json:"connections"`
	Pending     []pendingMessage  `json:"pending"` // oldest first, at most 100
}

// pendingMessage is a stored message the user has not acked yet and that has not expired.
type pendingMessage struct {
	ID        string          `json:"id"`
	TS        int64           `json:"ts"` // unix ms, as in the push frame
	ExpiresAt time.Time       `json:"expires_at"`
	Data      json.RawMessage `json:"data"`
}

// DataText is the data as the page shows it.
func (p pendingMessage) DataText() string { return string(p.Data) }

func lookupUser(ctx context.Context, d serverDeps, uid string) (userInfo, error) {
	if err := ident.Check("uid", uid); err != nil {
		return userInfo{}, httpapi.Errorf(httpapi.CodeInvalidRequest, "%v", err)
	}
	u := userInfo{UID: uid, Connections: []wire.Connection{}, Pending: []pendingMessage{}}
	acc, err := getAccount(ctx, d.db, uid)
	switch {
	case errors.Is(err, sql.ErrNoRows):
	case err != nil:
		return u, err
	default:
		u.Account = &acc
	}
	rows, err := d.db.QueryContext(ctx, `
		SELECT m.id, m.ts, i.expires_at, m.data FROM inbox i JOIN messages m ON m.id = i.message_id
		WHERE i.uid = ? AND i.expires_at > ? ORDER BY i.seq LIMIT ?`, uid, time.Now().UTC(), maxPendingShown)
	if err != nil {
		return u, fmt.Errorf("pending messages: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var p pendingMessage
		var data []byte
		if err := rows.Scan(&p.ID, &p.TS, &p.ExpiresAt, &data); err != nil {
			return u, fmt.Errorf("pending messages: %w", err)
		}
		p.Data = jsonOrString(data)
		u.Pending = append(u.Pending, p)
	}
	if err := rows.Err(); err != nil {
		return u, fmt.Errorf("pending messages: %w", err)
	}
	conns, err := d.pushAPI.connections(ctx, uid)
	if err != nil {
		return u, err
	}
	u.Connections = conns
	return u, nil
}

// jsonOrString returns stored data as JSON: itself when it is JSON (it always should be), else as a
// JSON string, so one bad row cannot break a whole answer.
func jsonOrString(b []byte) json.RawMessage {
	if json.Valid(b) {
		return b
	}
	if !utf8.Valid(b) {
		b = []byte(strings.ToValidUTF8(string(b), "\uFFFD"))
	}
	s, _ := json.Marshal(string(b))
	return s
}

type usersView struct {
	UID    string
	User   *userInfo
	Kicked []kickResult
	Closed int
}

func handleUsersPage(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uid := strings.TrimSpace(r.URL.Query().Get("uid"))
		v := view{Title: "Users", Nav: "users"}
		if uid == "" {
			v.Data = usersView{}
			render(w, r, http.StatusOK, "users", v)
			return
		}
		u, err := lookupUser(r.Context(), d, uid)
		v.Data = usersView{UID: uid, User: &u}
		if err = publicError(logger, "look the user up", err); err != nil {
			v.Error = errText(err)
			render(w, r, statusOf(err), "users", v)
			return
		}
		render(w, r, http.StatusOK, "users", v)
	})
}

func handleUserAPI(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, err := lookupUser(r.Context(), d, r.PathValue("uid"))
		if err = publicError(logger, "look the user up", err); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, u)
	})
}

func kickUser(r *http.Request, logger *slog.Logger, d serverDeps, uid string) ([]kickResult, int, error) {
	if err := ident.Check("uid", uid); err != nil {
		return nil, 0, httpapi.Errorf(httpapi.CodeInvalidRequest, "%v", err)
	}
	results := d.nodes.kick(r.Context(), uid, "kicked by an operator")
	if len(results) == 0 {
		return nil, 0, httpapi.Errorf(httpapi.CodeUnavailable, "no live push-server to ask")
	}
	closed := 0
	for _, k := range results {
		closed += k.Closed
	}
	done(logger, d, r, "kick", "uid", uid, "closed", closed)
	return results, closed, nil
}

func handleKickPage(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uid := r.PathValue("uid")
		results, closed, err := kickUser(r, logger, d, uid)
		v := view{Title: "Users", Nav: "users"}
		if err != nil {
			v.Error = errText(err)
			v.Data = usersView{UID: uid}
			render(w, r, statusOf(err), "users", v)
			return
		}
		v.Notice = fmt.Sprintf("Kicked %s: %d connection(s) closed.", uid, closed)
		uv := usersView{UID: uid, Kicked: results, Closed: closed}
		// The routes of the closed connections go a moment later; what is left is shown as it is now.
		if u, err := lookupUser(r.Context(), d, uid); err == nil {
			uv.User = &u
		}
		v.Data = uv
		render(w, r, http.StatusOK, "users", v)
	})
}

func handleKickAPI(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		uid := r.PathValue("uid")
		results, closed, err := kickUser(r, logger, d, uid)
		if err != nil {
			httpapi.WriteError(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"uid": uid, "closed": closed, "nodes": results})
	})
}
