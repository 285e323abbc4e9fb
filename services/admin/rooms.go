package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/ident"
	"github.com/heraldpush/herald/pkg/wire"
)

// roomRow is one room on the rooms page: its members in all and on each node.
type roomRow struct {
	Room    string          `json:"room"`
	Members int             `json:"members"`
	Nodes   []wire.RoomNode `json:"nodes"`
}

// roomsView is the rooms page: the largest rooms, and the room push form with its last result.
type roomsView struct {
	Rooms      []roomRow              `json:"rooms"`
	Unreached  []string               `json:"unreachable_nodes,omitempty"`
	FormRoom   string                 `json:"-"`
	FormData   string                 `json:"-"`
	LastResult *wire.RoomPushResponse `json:"-"`
}

// largestRooms merges the largest rooms each live node reports into the cluster's largest, with each
// node's share. A room large on one node only may rank lower than it is: nodes report their top 20.
func (c *cluster) largestRooms(ctx context.Context) roomsView {
	byRoom := map[string]*roomRow{}
	var v roomsView
	for _, st := range c.status(ctx) {
		if st.Stats == nil {
			v.Unreached = append(v.Unreached, st.ID)
			continue
		}
		for _, r := range st.Stats.TopRooms {
			row := byRoom[r.Room]
			if row == nil {
				row = &roomRow{Room: r.Room}
				byRoom[r.Room] = row
			}
			row.Members += r.Members
			row.Nodes = append(row.Nodes, wire.RoomNode{Node: st.ID, Members: r.Members})
		}
	}
	for _, row := range byRoom {
		sort.Slice(row.Nodes, func(i, j int) bool { return row.Nodes[i].Node < row.Nodes[j].Node })
		v.Rooms = append(v.Rooms, *row)
	}
	sort.Slice(v.Rooms, func(i, j int) bool {
		if v.Rooms[i].Members != v.Rooms[j].Members {
			return v.Rooms[i].Members > v.Rooms[j].Members
		}
		return v.Rooms[i].Room < v.Rooms[j].Room
	})
	if v.Rooms == nil {
		v.Rooms = []roomRow{}
	}
	return v
}

func (p *pushAPI) roomPush(ctx context.Context, room string, data json.RawMessage) (wire.RoomPushResponse, error) {
	if p.client == nil {
		return wire.RoomPushResponse{}, errNoKey
	}
	resp, err := p.client.RoomPush(ctx, room, wire.RoomPushRequest{Data: data})
	return resp, consoleError(err)
}

// checkRoomPush checks a room push as push-route would, so a typo is a form error.
func checkRoomPush(room string, data []byte) error {
	if err := ident.Check("room", room); err != nil {
		return httpapi.Errorf(httpapi.CodeInvalidRequest, "%v", err)
	}
	return checkData(data)
}

func handleRoomsPage(d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		render(w, r, http.StatusOK, "rooms", view{Title: "Rooms", Nav: "rooms", Data: d.nodes.largestRooms(r.Context())})
	})
}

func handleRoomPushPage(logger *slog.Logger, d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		room, data := strings.TrimSpace(r.PostFormValue("room")), strings.TrimSpace(r.PostFormValue("data"))
		v := d.nodes.largestRooms(r.Context())
		v.FormRoom, v.FormData = room, data
		page := view{Title: "Rooms", Nav: "rooms", Data: &v}
		err := checkRoomPush(room, []byte(data))
		var resp wire.RoomPushResponse
		if err == nil {
			resp, err = d.pushAPI.roomPush(r.Context(), room, json.RawMessage(data))
		}
		if err != nil {
			page.Error = errText(err)
			render(w, r, statusOf(err), "rooms", page)
			return
		}
		done(logger, d, r, "room_push", "room", room, "id", resp.ID, "members", resp.Members)
		v.LastResult = &resp
		page.Notice = "Message " + resp.ID + " sent to " + strconv.Itoa(resp.Members) + " members on " + strconv.Itoa(resp.Nodes) + " nodes."
		render(w, r, http.StatusOK, "rooms", page)
	})
}

func handleRoomsAPI(d serverDeps) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		httpapi.WriteJSON(w, http.StatusOK, d.nodes.largestRooms(r.Context()))
	})
}

func handleRoomPushAPI(logger *slog.Logger, d serverDeps, maxBody int64) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		room := r.PathValue("room")
		var req wire.RoomPushRequest
		if err := httpapi.DecodeStrict(w, r, maxBody, &req); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		if err := checkRoomPush(room, req.Data); err != nil {
			httpapi.WriteError(w, err)
			return
		}
		resp, err := d.pushAPI.roomPush(r.Context(), room, req.Data)
		if err != nil {
			httpapi.WriteError(w, err)
			return
		}
		done(logger, d, r, "room_push", "room", room, "id", resp.ID, "members", resp.Members)
		httpapi.WriteJSON(w, http.StatusOK, resp)
	})
}
