package inbox

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/mysqldb"
	"github.com/heraldpush/herald/pkg/testenv"
	"github.com/heraldpush/herald/pkg/wire"
)

func newStore(t *testing.T) *Store {
	t.Helper()
	m := testenv.NewMySQL(t)
	db, err := mysqldb.Open(context.Background(), m.DSN)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := mysqldb.Migrate(context.Background(), db, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	return NewStore(db)
}

func msg(id string) wire.Message {
	return wire.Message{ID: id, Data: json.RawMessage(`{"id":"` + id + `"}`), TS: 42}
}

func ids(ms []wire.Message) []string {
	out := []string{}
	for _, m := range ms {
		out = append(out, m.ID)
	}
	return out
}

func TestInbox(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	now := time.Now()

	for _, id := range []string{"m3", "m1", "m2"} { // stored order, not id order, is replay order
		if err := s.Save(ctx, msg(id), []string{"alice", "bob"}, time.Hour, now); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Save(ctx, msg("short"), []string{"alice"}, time.Second, now); err != nil {
		t.Fatal(err)
	}
	if err := s.Save(ctx, msg("m1"), []string{"carol"}, time.Hour, now); !errors.Is(err, ErrDuplicate) {
		t.Fatalf("second save of m1: %v, want ErrDuplicate", err)
	}
	if err := s.Save(ctx, msg("no-ttl"), []string{"alice"}, 0, now); err != nil {
		t.Fatal(err)
	}

	got, err := s.Pending(ctx, "alice", now)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"m3", "m1", "m2", "short"}; !slices.Equal(ids(got), want) {
		t.Fatalf("alice pending %v, want %v (a ttl-0 message is never pending)", ids(got), want)
	}
	if string(got[0].Data) != `{"id":"m3"}` || got[0].TS != 42 {
		t.Fatalf("message %+v", got[0])
	}
	if got, _ := s.Pending(ctx, "alice", now.Add(2*time.Second)); !slices.Equal(ids(got), []string{"m3", "m1", "m2"}) {
		t.Fatalf("after short expired: %v", ids(got))
	}
	if got, _ := s.Pending(ctx, "carol", now); len(got) != 0 {
		t.Fatalf("carol got %v from a duplicate save", ids(got))
	}

	// Acked by any device clears it for that user only; acking twice or unknown ids is fine.
	if err := s.Ack(ctx, []wire.Ack{{UID: "alice", ID: "m1"}, {UID: "alice", ID: "m1"}, {UID: "alice", ID: "nope"}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s.Pending(ctx, "alice", now); !slices.Equal(ids(got), []string{"m3", "m2", "short"}) {
		t.Fatalf("alice after ack %v", ids(got))
	}
	if got, _ := s.Pending(ctx, "bob", now); !slices.Equal(ids(got), []string{"m3", "m1", "m2"}) {
		t.Fatalf("bob after alice's ack %v", ids(got))
	}
	who, err := s.PendingFor(ctx, "m1", now)
	if err != nil || !who["bob"] || who["alice"] {
		t.Fatalf("PendingFor(m1) = %v %v", who, err)
	}

	// Expiry removes what is past its time: short's inbox row and message, and no-ttl's message once
	// its idempotency window is over.
	n, err := s.Expire(ctx, now.Add(25*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("nothing expired")
	}
	if got, _ := s.Pending(ctx, "bob", now.Add(-time.Hour)); len(got) != 0 {
		t.Fatalf("bob still has %v after every ttl ended", ids(got))
	}
	if err := s.Save(ctx, msg("no-ttl"), []string{"alice"}, 0, now); err != nil {
		t.Fatalf("an id whose window ended should be usable again: %v", err)
	}
}
