package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/client"
	"github.com/heraldpush/herald/pkg/wire"
)

// roomDevice connects uid with a token allowing rooms.
func roomDevice(t testing.TB, ps *pushServer, uid string, rooms ...string) *client.Conn {
	t.Helper()
	tok, _, err := signer.Sign(uid, "d", rooms...)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Dial(context.Background(), client.Config{Token: tok, WSURL: ps.wsURL, UID: uid, Device: "d"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roomIDs reads room frames from c until it has n items, failing after 10 s, and returns their ids.
func roomIDs(t testing.TB, c *client.Conn, n int) []string {
	t.Helper()
	var ids []string
	for len(ids) < n {
		select {
		case f := <-c.Rooms():
			for _, m := range f.Items {
				ids = append(ids, m.ID)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("got %v, want %d room messages", ids, n)
		}
	}
	return ids
}

func noRoomFrame(t testing.TB, c *client.Conn, within time.Duration) {
	t.Helper()
	select {
	case f := <-c.Rooms():
		t.Fatalf("unexpected room frame %+v", f)
	case <-time.After(within):
	}
}

// TestRoomAcrossNodes: members on two nodes each get every room message once and in publish order;
// the registry names both nodes; leave and close stop deliveries; the business system joins users.
func TestRoomAcrossNodes(t *testing.T) {
	room := uniq("live")
	a := roomDevice(t, nodeA, uniq("viewer-a"), "live-*")
	b := roomDevice(t, nodeB, uniq("viewer-b"), "live-*")
	ctx := context.Background()
	for _, c := range []*client.Conn{a, b} {
		if err := c.Join(ctx, room); err != nil {
			t.Fatal(err)
		}
	}
	eventually(t, "both nodes in the registry", func() error {
		var info wire.RoomInfo
		if r := call(t, "GET", wire.PathRoom(room), apiKey, nil, nil); r.status != 200 || r.decode(&info) != nil || info.Members != 2 || len(info.Nodes) != 2 {
			return fmt.Errorf("info %d %s", r.status, r.body)
		}
		return nil
	})
	var want []string
	for i := range 20 {
		var resp wire.RoomPushResponse
		r := call(t, "POST", wire.PathRoom(room)+"/push", apiKey, map[string]any{"data": map[string]int{"n": i}}, nil)
		if r.status != 200 || r.decode(&resp) != nil || resp.Nodes != 2 || resp.Members != 2 {
			t.Fatalf("room push: %d %s", r.status, r.body)
		}
		want = append(want, resp.ID)
	}
	for name, c := range map[string]*client.Conn{"a": a, "b": b} {
		if got := roomIDs(t, c, 20); strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("%s got %v, want %v", name, got, want)
		}
	}

	// b leaves: only a gets the next one, and the registry drops node B.
	if err := b.Leave(ctx, room); err != nil {
		t.Fatal(err)
	}
	eventually(t, "node B out of the registry", func() error {
		var info wire.RoomInfo
		if r := call(t, "GET", wire.PathRoom(room), apiKey, nil, nil); r.decode(&info) != nil || info.Members != 1 {
			return fmt.Errorf("info %s", r.body)
		}
		return nil
	})
	call(t, "POST", wire.PathRoom(room)+"/push", apiKey, map[string]any{"data": "after b left"}, nil)
	roomIDs(t, a, 1)
	noRoomFrame(t, b, 300*time.Millisecond)

	// The business system joins b's user again, server-side, with no claim needed.
	var users wire.RoomUsersResponse
	if r := call(t, "POST", wire.PathRoom(room)+"/join", apiKey, map[string]any{"uids": []string{b.Welcome().UID}}, nil); r.status != 200 || r.decode(&users) != nil || users.Connections != 1 {
		t.Fatalf("join by API: %d %s", r.status, r.body)
	}
	eventually(t, "node B back in the registry", func() error {
		var info wire.RoomInfo
		if r := call(t, "GET", wire.PathRoom(room), apiKey, nil, nil); r.decode(&info) != nil || info.Members != 2 {
			return fmt.Errorf("info %s", r.body)
		}
		return nil
	})
	call(t, "POST", wire.PathRoom(room)+"/push", apiKey, map[string]any{"data": "b is back"}, nil)
	roomIDs(t, b, 1)

	// a closes: the room is down to node B.
	a.Close()
	eventually(t, "a's close leaves the room", func() error {
		var info wire.RoomInfo
		if r := call(t, "GET", wire.PathRoom(room), apiKey, nil, nil); r.decode(&info) != nil || info.Members != 1 || info.Nodes[0].Node != nodeB.id {
			return fmt.Errorf("info %s", r.body)
		}
		return nil
	})
}

// TestRoomOfDeadNodeSwept: a killed node's room entries go with its routes.
func TestRoomOfDeadNodeSwept(t *testing.T) {
	ps, err := startPushServer("ps-room-doomed", map[string]string{"HERALD_ROOM_POLICY": "open"})
	if err != nil {
		t.Fatal(err)
	}
	defer ps.kill()
	room := uniq("doomed-room")
	c := roomDevice(t, ps, uniq("doomed-viewer"))
	if err := c.Join(context.Background(), room); err != nil {
		t.Fatal(err)
	}
	store := routeStore(t)
	eventually(t, "registered", func() error {
		if n, _ := store.RoomNodes(context.Background(), room); n[ps.id] != 1 {
			return fmt.Errorf("room nodes %v", n)
		}
		return nil
	})
	ps.kill()
	eventually(t, "swept", func() error {
		if n, err := store.RoomNodes(context.Background(), room); err != nil || len(n) != 0 {
			return fmt.Errorf("room nodes %v %v", n, err)
		}
		return nil
	})
}

// TestRoomAPIBadInput: bad names, bodies and uids get the documented errors.
func TestRoomAPIBadInput(t *testing.T) {
	long := strings.Repeat("r", 129)
	for _, tt := range []struct {
		name, method, path string
		body               any
		status             int
		code               string
	}{
		{"room name too long", "POST", "/v1/rooms/" + long + "/push", map[string]any{"data": 1}, 400, "invalid_request"},
		{"room name with a space", "GET", "/v1/rooms/a%20b", nil, 400, "invalid_request"},
		{"no data", "POST", "/v1/rooms/ok/push", map[string]any{}, 400, "invalid_request"},
		{"unknown field", "POST", "/v1/rooms/ok/push", map[string]any{"data": 1, "ttl": 3}, 400, "invalid_request"},
		{"data too large", "POST", "/v1/rooms/ok/push", map[string]any{"data": strings.Repeat("x", 70000)}, 413, ""},
		{"join without uids", "POST", "/v1/rooms/ok/join", map[string]any{"uids": []string{}}, 400, "invalid_request"},
		{"bad uid", "POST", "/v1/rooms/ok/leave", map[string]any{"uids": []string{"a|b"}}, 400, "invalid_request"},
		{"no key", "GET", "/v1/rooms/ok", nil, 401, "unauthorized"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			key := apiKey
			if tt.code == "unauthorized" {
				key = ""
			}
			r := call(t, tt.method, tt.path, key, tt.body, http.Header{})
			if r.status != tt.status || (tt.code != "" && r.code() != tt.code) {
				t.Fatalf("%d %s, want %d %s", r.status, r.body, tt.status, tt.code)
			}
		})
	}
	// An empty room: nobody to send to, not an error.
	var resp wire.RoomPushResponse
	if r := call(t, "POST", "/v1/rooms/"+uniq("empty")+"/push", apiKey, map[string]any{"data": 1}, nil); r.status != 200 || r.decode(&resp) != nil || resp.Members != 0 || resp.ID == "" {
		t.Fatalf("empty room: %d %s", r.status, r.body)
	}
}

// TestRoomRecovery: a member that comes back (its node drained, say) and joins with the last id it saw
// gets everything it missed, in order, then the messages published while it was joining, each once,
// with recovered true; one whose last id is beyond the history gets recovered false.
func TestRoomRecovery(t *testing.T) {
	room := uniq("live-recover")
	uid := uniq("recovering")
	ctx := context.Background()
	publish := func(data string) string {
		var resp wire.RoomPushResponse
		r := call(t, "POST", wire.PathRoom(room)+"/push", apiKey, map[string]any{"data": data}, nil)
		if r.status != 200 || r.decode(&resp) != nil {
			t.Fatalf("room push: %d %s", r.status, r.body)
		}
		return resp.ID
	}
	first := roomDevice(t, nodeA, uid, "live-*")
	if err := first.Join(ctx, room); err != nil {
		t.Fatal(err)
	}
	eventually(t, "joined in the registry", func() error {
		var info wire.RoomInfo
		if r := call(t, "GET", wire.PathRoom(room), apiKey, nil, nil); r.decode(&info) != nil || info.Members != 1 {
			return fmt.Errorf("info %s", r.body)
		}
		return nil
	})
	seen := publish("before")
	roomIDs(t, first, 1)
	first.Close()

	var published []string // in publish order, after seen
	for i := range 5 {
		published = append(published, publish(fmt.Sprint("while away ", i)))
	}
	// Publishing goes on while the member joins again, on the other node.
	stop := make(chan struct{})
	done := make(chan []string)
	go func() {
		var ids []string
		for {
			select {
			case <-stop:
				done <- ids
				return
			default:
				ids = append(ids, publish("during the join"))
				time.Sleep(5 * time.Millisecond)
			}
		}
	}()
	again := roomDevice(t, nodeB, uid, "live-*")
	recovered, err := again.JoinSince(ctx, room, seen)
	if err != nil || !recovered {
		t.Fatalf("join since %s: recovered %v, %v", seen, recovered, err)
	}
	time.Sleep(100 * time.Millisecond)
	close(stop)
	published = append(published, <-done...)
	got := roomIDs(t, again, len(published))
	if strings.Join(got, ",") != strings.Join(published, ",") {
		t.Fatalf("after rejoining got\n%v\nwant\n%v", got, published)
	}
	noRoomFrame(t, again, 200*time.Millisecond)

	// An id the history does not hold: joined, but not recovered.
	third := roomDevice(t, nodeA, uniq("too-late"), "live-*")
	if recovered, err := third.JoinSince(ctx, room, "01ZZZZZZZZZZZZZZZZZZZZZZZZ"); err != nil || recovered {
		t.Fatalf("join since an unknown id: recovered %v, %v", recovered, err)
	}
}
