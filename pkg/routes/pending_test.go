package routes

import (
	"context"
	"testing"
	"time"
)

func TestPendingMarker(t *testing.T) {
	s, rdb, _ := newStore(t)
	ctx := context.Background()
	connect := func(uid string) bool {
		t.Helper()
		pending, err := s.Register(ctx, rt(uid, "c-"+uid, "n1", "phone", t0))
		if err != nil {
			t.Fatal(err)
		}
		return pending
	}

	if connect("alice") {
		t.Fatal("a user never marked registers as pending")
	}
	if err := s.MarkPending(ctx, []string{"alice", "bob"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if !connect("alice") || !connect("bob") {
		t.Fatal("marked users register as not pending")
	}
	if ttl := rdb.PTTL(ctx, "herald:pending:{alice}").Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("marker ttl %v, want up to a minute", ttl)
	}
	// A shorter ttl never shortens the marker: the longer message still waits.
	if err := s.MarkPending(ctx, []string{"alice"}, time.Second); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, "herald:pending:{alice}").Val(); ttl <= time.Second {
		t.Fatalf("marker ttl %v after a shorter mark, want the longer one kept", ttl)
	}

	// A lookup read the marker, then a message was stored (marked again) before it cleared: the clear
	// must leave the marker, or that message would never be replayed.
	seen, err := s.PendingMark(ctx, "alice")
	if err != nil || seen == "" {
		t.Fatalf("PendingMark = %q, %v", seen, err)
	}
	if err := s.MarkPending(ctx, []string{"alice"}, time.Minute); err != nil {
		t.Fatal(err)
	}
	if cleared, err := s.ClearPending(ctx, "alice", seen); err != nil || cleared {
		t.Fatalf("ClearPending with a stale value = %v, %v; want the marker kept", cleared, err)
	}
	if !connect("alice") {
		t.Fatal("marker gone after a clear that raced a new message")
	}
	// Nothing stored since the read: the clear removes it.
	seen, _ = s.PendingMark(ctx, "alice")
	if cleared, err := s.ClearPending(ctx, "alice", seen); err != nil || !cleared {
		t.Fatalf("ClearPending with the current value = %v, %v", cleared, err)
	}
	if connect("alice") {
		t.Fatal("cleared user still registers as pending")
	}
	if seen, err := s.PendingMark(ctx, "alice"); err != nil || seen != "" {
		t.Fatalf("PendingMark of a cleared user = %q, %v", seen, err)
	}
	if cleared, _ := s.ClearPending(ctx, "alice", ""); cleared {
		t.Fatal("clearing with no value read removed something")
	}
	if err := s.MarkPending(ctx, []string{"x"}, 0); err == nil {
		t.Fatal("a mark without ttl was accepted")
	}
}
