package main

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/testenv"
	"github.com/heraldpush/herald/pkg/wire"
)

// dialRooms connects uid with a token whose rooms claim holds rooms.
func dialRooms(t testing.TB, n *node, uid string, rooms ...string) *wsClient {
	t.Helper()
	tok, _, err := signer.Sign(uid, "d", rooms...)
	if err != nil {
		t.Fatal(err)
	}
	c, status := tryDial(t, n.wsURL+"?token="+tok)
	if c == nil {
		t.Fatalf("dial %s: HTTP %d", uid, status)
	}
	return c
}

func roomPush(t testing.TB, n *node, room, id, data string) int {
	t.Helper()
	var resp wire.NodeRoomPushResponse
	req := wire.NodeRoomPushRequest{Room: room, Message: wire.Message{ID: id, Data: json.RawMessage(data), TS: time.Now().UnixMilli()}}
	if status := internalCall(t, n, wire.PathRoomPush, req, &resp); status != 200 {
		t.Fatalf("room push: HTTP %d", status)
	}
	return resp.Members
}

// roomItems reads c's next room frame and returns its room and the ids of its items.
func roomItems(t testing.TB, c *wsClient) (string, []string) {
	t.Helper()
	var f wire.RoomFrame
	if err := json.Unmarshal(c.nextTyped(wire.TypeRoom), &f); err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, m := range f.Items {
		ids = append(ids, m.ID)
	}
	return f.Room, ids
}

func (c *wsClient) nextTyped(typ string) []byte {
	c.t.Helper()
	for {
		b := c.next()
		var m struct{ Type string }
		json.Unmarshal(b, &m)
		if m.Type == typ {
			return b
		}
	}
}

// TestRoomsOnOneNode: joins as the token allows, the documented errors, room messages to every member
// and no one else, leave and close stop them.
func TestRoomsOnOneNode(t *testing.T) {
	n := startNode(t, "ps-rooms", nodeOpts{env: map[string]string{"HERALD_MAX_ROOMS_PER_CONN": "2"}})
	ann := dialRooms(t, n, "room-ann", "lobby", "match:*")
	bob := dialRooms(t, n, "room-bob", "lobby")
	eve := dialRooms(t, n, "room-eve")

	for _, tt := range []struct {
		c     *wsClient
		frame string
		want  string // the answer's type, or the error's code
	}{
		{ann, `{"type":"join","room":"lobby","ref":"j1"}`, wire.TypeJoined},
		{ann, `{"type":"join","room":"match:42","ref":"j2"}`, wire.TypeJoined},
		{ann, `{"type":"join","room":"match:43","ref":"j3"}`, wire.CodeTooMany},
		{bob, `{"type":"join","room":"lobby","ref":"j4"}`, wire.TypeJoined},
		{bob, `{"type":"join","room":"match:42","ref":"j5"}`, wire.CodeForbidden},
		{eve, `{"type":"join","room":"lobby","ref":"j6"}`, wire.CodeForbidden},
		{eve, `{"type":"join","room":"bad room","ref":"j7"}`, wire.CodeInvalidRoom},
		{eve, `{"type":"join","ref":"j8"}`, wire.CodeInvalidRoom},
		{eve, `{"type":"leave","room":"` + strings.Repeat("r", 129) + `","ref":"j9"}`, wire.CodeInvalidRoom},
	} {
		tt.c.send(tt.frame)
		var got struct{ Type, Code, Ref, Room string }
		for got.Ref == "" {
			json.Unmarshal(tt.c.next(), &got)
		}
		if got.Type != tt.want && got.Code != tt.want {
			t.Fatalf("%s: %+v, want %s", tt.frame, got, tt.want)
		}
	}

	if members := roomPush(t, n, "lobby", "r1", `{"text":"hello"}`); members != 2 {
		t.Fatalf("members %d, want 2", members)
	}
	for name, c := range map[string]*wsClient{"ann": ann, "bob": bob} {
		if room, ids := roomItems(t, c); room != "lobby" || strings.Join(ids, ",") != "r1" {
			t.Fatalf("%s got %s %v", name, room, ids)
		}
	}
	// Bob leaves; ann's other room shows she still gets hers.
	bob.send(`{"type":"leave","room":"lobby","ref":"l1"}`)
	bob.nextTyped(wire.TypeLeft)
	roomPush(t, n, "lobby", "r2", `2`)
	if _, ids := roomItems(t, ann); strings.Join(ids, ",") != "r2" {
		t.Fatalf("ann got %v", ids)
	}
	bob.send(`{"type":"ping"}`)
	if b := bob.nextTyped(wire.TypePong); b == nil {
		t.Fatal("no pong")
	}
	// Ann closes: the room empties.
	ann.conn.Close()
	eventually(t, "the closed member left its rooms", func() error {
		if m := roomPush(t, n, "match:42", "r3", `3`); m != 0 {
			return fmt.Errorf("match:42 has %d members", m)
		}
		return nil
	})
	var st wire.Stats
	internalCall(t, n, wire.PathStats, nil, &st)
}

// TestRoomWindowMergesMessages: within -room-window a room's messages arrive as one frame, in order.
func TestRoomWindowMergesMessages(t *testing.T) {
	n := startNode(t, "ps-room-window", nodeOpts{env: map[string]string{"HERALD_ROOM_WINDOW": "300ms", "HERALD_ROOM_POLICY": "open"}})
	a := dialRooms(t, n, "window-a")
	a.send(`{"type":"join","room":"chat","ref":"j"}`)
	a.nextTyped(wire.TypeJoined)
	for i := range 5 {
		roomPush(t, n, "chat", fmt.Sprintf("w%d", i), `"x"`)
	}
	if _, ids := roomItems(t, a); strings.Join(ids, ",") != "w0,w1,w2,w3,w4" {
		t.Fatalf("first frame %v, want all five in order", ids)
	}
}

// TestServerSideJoin: push-route's room API joins every connection of a user, which is told so.
func TestServerSideJoin(t *testing.T) {
	n := startNode(t, "ps-room-server", nodeOpts{})
	phone := dialRooms(t, n, "joined-by-api")
	laptop := dialRooms(t, n, "joined-by-api")
	var resp wire.RoomMembersResponse
	if status := internalCall(t, n, wire.PathRoomJoin, wire.RoomMembersRequest{Room: "doc:7", UIDs: []string{"joined-by-api", "nobody"}}, &resp); status != 200 || resp.Connections != 2 {
		t.Fatalf("room-join: %d %+v, want 2 connections", status, resp)
	}
	for _, c := range []*wsClient{phone, laptop} {
		c.nextTyped(wire.TypeJoined)
	}
	if m := roomPush(t, n, "doc:7", "e1", `{"edit":1}`); m != 2 {
		t.Fatalf("members %d", m)
	}
	internalCall(t, n, wire.PathRoomLeave, wire.RoomMembersRequest{Room: "doc:7", UIDs: []string{"joined-by-api"}}, &resp)
	if resp.Connections != 2 {
		t.Fatalf("room-leave: %+v", resp)
	}
	if m := roomPush(t, n, "doc:7", "e2", `{"edit":2}`); m != 0 {
		t.Fatalf("members after leave %d", m)
	}
}

// TestRoomRegistryAfterRedisOutage: rooms joined while Redis is down, and those Redis lost by coming
// back empty, are in the registry again once it answers.
func TestRoomRegistryAfterRedisOutage(t *testing.T) {
	r := testenv.NewRedis(t)
	n := startNode(t, "ps-room-outage", nodeOpts{redis: r, env: map[string]string{"HERALD_ROOM_POLICY": "open"}})
	store := routeStore(t, r)
	a := dialRooms(t, n, "outage-a")
	a.send(`{"type":"join","room":"before-outage","ref":"j1"}`)
	a.nextTyped(wire.TypeJoined)
	registered := func(room string, want int) func() error {
		return func() error {
			got, err := store.RoomNodes(context.Background(), room)
			if err != nil || got["ps-room-outage"] != want {
				return fmt.Errorf("%s: %v %v", room, got, err)
			}
			return nil
		}
	}
	eventually(t, "registered before the outage", registered("before-outage", 1))

	if err := r.Stop(); err != nil {
		t.Fatal(err)
	}
	a.send(`{"type":"join","room":"during-outage","ref":"j2"}`)
	// Answered anyway: the registry catches up when Redis is back, which comes back empty.
	a.nextTyped(wire.TypeJoined)
	if err := r.Restart(context.Background()); err != nil {
		t.Fatal(err)
	}
	eventually(t, "the room joined during the outage registered", registered("during-outage", 1))
	eventually(t, "the room Redis forgot registered again", registered("before-outage", 1))
}
