package client

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"

	"github.com/heraldpush/herald/pkg/wire"
)

// Rooms delivers the room frames of this connection: each a room's messages of one merge window, in
// publish order. It is closed when the connection ends (for a Dial'd Conn).
func (c *Conn) Rooms() <-chan wire.RoomFrame { return c.rooms }

// recoveredAnswer is how the reader tells a waiting JoinSince that the server recovered.
const recoveredAnswer = "recovered"

// Join puts the connection into room and returns once the server answered: nil when joined, a
// *FrameError (forbidden, invalid_room, too_many_rooms) when it refused.
func (c *Conn) Join(ctx context.Context, room string) error {
	_, err := c.roomCall(ctx, wire.TypeJoin, room, "")
	return err
}

// JoinSince joins room again after a gap, asking for the room's messages after since (the id of the
// last one seen): when recovered, they came on Rooms before the answer, in order; when not, the
// room's history did not reach back that far (or the server keeps none).
func (c *Conn) JoinSince(ctx context.Context, room, since string) (recovered bool, err error) {
	answer, err := c.roomCall(ctx, wire.TypeJoin, room, since)
	return answer == recoveredAnswer, err
}

// Leave takes the connection out of room.
func (c *Conn) Leave(ctx context.Context, room string) error {
	_, err := c.roomCall(ctx, wire.TypeLeave, room, "")
	return err
}

func (c *Conn) roomCall(ctx context.Context, typ, room, since string) (string, error) {
	ref := NewRef()
	w, err := c.ups.register(ref)
	if err != nil {
		return "", err
	}
	defer c.ups.unregister(ref)
	if err := c.writeJSON(ctx, wire.Inbound{Type: typ, Room: room, Ref: ref, Since: since}); err != nil {
		return "", err
	}
	select {
	case answer := <-w.acked:
		return answer, nil
	case e := <-w.failed:
		return "", e
	case <-c.done:
		return "", fmt.Errorf("%s %s: connection ended: %w", typ, room, c.Err())
	case <-ctx.Done():
		return "", ctx.Err()
	}
}

// Rooms delivers the room frames of every connection; it is closed when Run returns.
func (c *Client) Rooms() <-chan wire.RoomFrame { return c.rooms }

// Join puts the client into room now, if it is connected, and again on every connection after this
// one. It returns the server's answer on the current connection (nil while there is none: the join
// happens on the next).
func (c *Client) Join(ctx context.Context, room string) error {
	c.mu.Lock()
	if !slices.Contains(c.joined, room) {
		c.joined = append(c.joined, room)
	}
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return nil
	}
	err := conn.Join(ctx, room)
	if fe := (*FrameError)(nil); errors.As(err, &fe) {
		c.forget(room) // refused for good (forbidden, invalid): not asked again after a reconnect
	}
	return err
}

// Leave takes the client out of room, now and on later connections.
func (c *Client) Leave(ctx context.Context, room string) error {
	c.forget(room)
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn == nil {
		return nil
	}
	return conn.Leave(ctx, room)
}

func (c *Client) forget(room string) {
	c.mu.Lock()
	c.joined = slices.DeleteFunc(c.joined, func(r string) bool { return r == room })
	c.mu.Unlock()
}

// rejoin joins a new connection to the client's rooms, each with the last message seen in it, so the
// server sends what was missed meanwhile when its room history reaches back that far.
func (c *Client) rejoin(ctx context.Context, conn *Conn) {
	c.mu.Lock()
	rooms := slices.Clone(c.joined)
	last := maps.Clone(c.lastSeen)
	c.mu.Unlock()
	for _, room := range rooms {
		var err error
		recovered := true
		if since := last[room]; since != "" {
			recovered, err = conn.JoinSince(ctx, room, since)
		} else {
			err = conn.Join(ctx, room)
		}
		switch {
		case err != nil:
			c.log.Warn("join again after reconnecting", "room", room, "err", err)
		case !recovered:
			c.log.Info("joined again; the room's history did not reach back to the last message seen", "room", room)
		}
	}
}

// seen records the last message id of a room frame, for rejoin.
func (c *Client) seen(room, id string) {
	c.mu.Lock()
	c.lastSeen[room] = id
	c.mu.Unlock()
}
