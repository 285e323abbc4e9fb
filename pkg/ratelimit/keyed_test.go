package ratelimit

import (
	"fmt"
	"testing"
	"time"
)

func TestKeyed(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := NewKeyed(6, time.Minute, 3, 0) // one token per 10 s

	for i := range 3 {
		if ok, _ := l.Allow("a", now); !ok {
			t.Fatalf("attempt %d within burst refused", i)
		}
	}
	ok, retry := l.Allow("a", now)
	if ok {
		t.Fatal("attempt over burst allowed")
	}
	if retry <= 0 || retry > 10*time.Second {
		t.Fatalf("retry after %v, want (0, 10s]", retry)
	}
	if ok, _ := l.Allow("b", now); !ok {
		t.Fatal("another key is limited by the first")
	}
	if ok, _ := l.Allow("a", now.Add(retry)); !ok {
		t.Fatal("refused after waiting the advised time")
	}
}

func TestKeyedBoundsKeys(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	l := NewKeyed(1, time.Minute, 1, 10)
	for i := range 100 {
		l.Allow(fmt.Sprint("k", i), now)
	}
	if n := len(l.buckets); n > 11 {
		t.Fatalf("%d buckets, want at most maxKeys+1", n)
	}
	// Once the buckets refill they are swept and new keys get their own again.
	later := now.Add(time.Hour)
	if ok, _ := l.Allow("fresh", later); !ok {
		t.Fatal("fresh key refused after sweep")
	}
	if n := len(l.buckets); n != 1 {
		t.Fatalf("%d buckets after sweep, want 1", n)
	}
}
