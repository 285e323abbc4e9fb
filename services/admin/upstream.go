package main

import (
	"context"
	"database/sql"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/ident"
)

// upstreamMessage is one archived upstream message (DESIGN.md: the Kafka record's fields).
type upstreamMessage struct {
	ID         string          `json:"id"`
	UID        string          `json:"uid"`
	Device     string          `json:"device"`
	ConnID     string          `json:"conn_id"`
	Node       string          `json:"node"`
	TS         int64           `json:"ts"` // unix ms, as in the record
	Data       json.RawMessage `json:"data"`
	ArchivedAt time.Time       `json:"archived_at"`
}

// DataText is the data as the page shows it.
func (m upstreamMessage) DataText() string { return string(m.Data) }

// upstreamPage is one page of the archive, newest first. Pages are keyset-paged on (ts, id), so a
// page stays right while new messages arrive.
type upstreamPage struct {
	Messages []upstreamMessage `json:"messages"`
	// NextBefore, when set, is the before= of the next (older) page.
	NextBefore string `json:"next_before,omitempty"`
	UID        string `json:"-"`
	Before     string `json:"-"`
}

// cursor is a position in the archive: messages strictly older than (TS, ID) come after it. Its text
// form is "<ts>:<id>"; a bare "<ts>" means everything before that millisecond.
type cursor struct {
	TS int64
	ID string
}

func (c cursor) String() string { return strconv.FormatInt(c.TS, 10) + ":" + c.ID }

func parseCursor(s string) (cursor, bool, error) {
	if s == "" {
		return cursor{}, false, nil
	}
	ts, id, _ := strings.Cut(s, ":")
	n, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return cursor{}, false, httpapi.Errorf(httpapi.CodeInvalidRequest, "before must be <ts> or <ts>:<id> as next_before gives it")
	}
	return cursor{TS: n, ID: id}, true, nil
}

func listUpstream(ctx context.Context, db *sql.DB, uid, before string) (upstreamPage, error) {
	p := upstreamPage{Messages: []upstreamMessage{}, UID: uid, Before: before}
	if uid != "" {
		if err := ident.Check("uid", uid); err != nil {
			return p, httpapi.Errorf(httpapi.CodeInvalidRequest, "%v", err)
		}
	}
	cur, paged, err := parseCursor(before)
	if err != nil {
		return p, err
	}
	var where []string
	var args []any
	if uid != "" {
		where, args = append(where, "uid = ?"), append(args, uid)
	}
	if paged {
		// "ts <= ?" is the index range; the rest drops what is not strictly older. A bare ts has an
		// empty id, which no id is below: the whole millisecond is excluded.
		where, args = append(where, "ts <= ? AND (ts < ? OR id < ?)"), append(args, cur.TS, cur.TS, cur.ID)
	}
	q := "SELECT id, uid, device, conn_id, node, ts, data, archived_at FROM upstream_messages"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY ts DESC, id DESC LIMIT ?"
	args = append(args, pageSize+1)
	rows, err := db.QueryContext(ctx, q, args...)
	if err != nil {
		return p, fmt.Errorf("list upstream messages: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		var m upstreamMessage
		var data []byte
		if err := rows.Scan(&m.ID, &m.UID, &m.Device, &m.ConnID, &m.Node, &m.TS, &data, &m.ArchivedAt); err != nil {
			return p, fmt.Errorf("list upstream messages: %w", err)
		}
		m.Data = jsonOrString(data)
		p.Messages = append(p.Messages, m)
	}
	if len(p.Messages) > pageSize {
		p.Messages = p.Messages[:pageSize]
		last := p.Messages[pageSize-1]
		p.NextBefore = cursor{TS: last.TS, ID: last.ID}.String()
	}
	return p, rows.Err()
}

func handleUpstreamPage(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		page, err := listUpstream(r.Context(), d.db, strings.TrimSpace(q.Get("uid")), q.Get("before"))
		v := view{Title: "Upstream", Nav: "upstream", Data: page}
		if err = publicError(logger, "list upstream messages", err); err != nil {
			v.Error = errText(err)
			render(w, r, statusOf(err), "upstream", v)
			return
		}
		render(w, r, http.StatusOK, "upstream", v)
	})
}

func handleUpstreamAPI(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		page, err := listUpstream(r.Context(), d.db, q.Get("uid"), q.Get("before"))
		if err = publicError(logger, "list upstream messages", err); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, page)
	})
}
