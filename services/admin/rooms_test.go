package main

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/client"
	"github.com/heraldpush/herald/pkg/wire"
)

// TestAPIRooms: the rooms list shows each room's members per node, and a room push from the console
// reaches the room's members on both nodes.
func TestAPIRooms(t *testing.T) {
	var members []*client.Conn
	for i, ps := range []*pushServer{nodeA, nodeA, nodeB} {
		tok, _, err := signer.Sign(fmt.Sprint("room-viewer-", i), "d", "console-room")
		if err != nil {
			t.Fatal(err)
		}
		c, err := client.Dial(context.Background(), client.Config{Token: tok, WSURL: ps.wsURL, UID: fmt.Sprint("room-viewer-", i), Device: "d"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if err := c.Join(context.Background(), "console-room"); err != nil {
			t.Fatal(err)
		}
		members = append(members, c)
	}
	v := decode[roomsView](t, api(t, http.MethodGet, "/api/v1/rooms", nil))
	var row *roomRow
	for i := range v.Rooms {
		if v.Rooms[i].Room == "console-room" {
			row = &v.Rooms[i]
		}
	}
	if row == nil || row.Members != 3 || len(row.Nodes) != 2 || row.Nodes[0] != (wire.RoomNode{Node: "ps-a", Members: 2}) {
		t.Fatalf("rooms %+v", v.Rooms)
	}

	for _, tc := range []struct{ path, body, code string }{
		{"/api/v1/rooms/bad%20room/push", `{"data":1}`, "invalid_request"},
		{"/api/v1/rooms/console-room/push", `{}`, "invalid_request"},
		{"/api/v1/rooms/console-room/push", `{"data":`, "malformed_json"},
	} {
		if r := api(t, http.MethodPost, tc.path, tc.body); r.status != 400 || r.code() != tc.code {
			t.Errorf("%s %s: %d %s", tc.path, tc.body, r.status, r.body)
		}
	}
	var resp wire.RoomPushResponse
	eventually(t, "both nodes in the room registry", func() error {
		resp = decode[wire.RoomPushResponse](t, api(t, http.MethodPost, "/api/v1/rooms/console-room/push", map[string]any{"data": "from the console"}))
		if resp.Members != 3 || resp.Nodes != 2 {
			return fmt.Errorf("room push %+v", resp)
		}
		return nil
	})
	for i, c := range members {
		deadline := time.After(10 * time.Second)
		for got := false; !got; {
			select {
			case f := <-c.Rooms():
				for _, m := range f.Items {
					got = got || m.ID == resp.ID
				}
			case <-deadline:
				t.Fatalf("member %d did not get %s", i, resp.ID)
			}
		}
	}
}
