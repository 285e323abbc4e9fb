package main

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/heraldpush/herald/pkg/wire"
)

func TestConnectRouteDeliverClose(t *testing.T) {
	n := startNode(t, "ps-basic", nodeOpts{})
	c := dial(t, n, "alice", "phone")
	if c.welcome.UID != "alice" || c.welcome.Node != "ps-basic" || c.welcome.ConnID == "" || c.welcome.HeartbeatS != 30 {
		t.Fatalf("welcome %+v", c.welcome)
	}
	rs := lookup(t, n.redis, "alice")
	if len(rs) != 1 || rs[0].ConnID != c.welcome.ConnID || rs[0].Node != "ps-basic" || rs[0].Device != "phone" {
		t.Fatalf("routes after connect: %+v", rs)
	}

	resp := deliver(t, n, "m1", `{"hello":"world"}`, "alice", "nobody")
	if len(resp.Results) != 2 || resp.Results[0].Delivered != 1 || resp.Results[1].Delivered != 0 || len(resp.Results[1].ConnIDs) != 0 {
		t.Fatalf("deliver response %+v", resp)
	}
	var p wire.Push
	if err := json.Unmarshal(c.next(), &p); err != nil || p.Type != "push" || p.ID != "m1" || string(p.Data) != `{"hello":"world"}` || p.TS == 0 {
		t.Fatalf("push frame %+v (%v)", p, err)
	}

	c.send(`{"type":"ping"}`)
	c.nextOfType("pong")

	c.conn.Close()
	eventually(t, "route removed after close", func() error {
		if rs := lookup(t, n.redis, "alice"); len(rs) != 0 {
			return fmt.Errorf("routes %+v", rs)
		}
		return nil
	})
}
