package apikey

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/heraldpush/herald/pkg/mysqldb"
	"github.com/heraldpush/herald/pkg/testenv"
)

func TestStore(t *testing.T) {
	ctx := context.Background()
	m := testenv.NewMySQL(t)
	db, err := mysqldb.Open(ctx, m.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := mysqldb.Migrate(ctx, db, slog.New(slog.NewTextHandler(io.Discard, nil))); err != nil {
		t.Fatal(err)
	}
	s := NewStore(db)

	plain, k, err := s.Create(ctx, "billing")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(plain, Prefix) || !strings.HasPrefix(plain, k.Prefix) || len(plain) < 40 {
		t.Fatalf("key %q with prefix %q", plain, k.Prefix)
	}
	var stored int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM api_keys WHERE key_hash = ?", plain).Scan(&stored); err != nil || stored != 0 {
		t.Fatalf("the key is stored in clear (%d, %v)", stored, err)
	}
	got, err := s.Verify(ctx, plain)
	if err != nil || got.ID != k.ID || got.Name != "billing" {
		t.Fatalf("Verify = %+v, %v", got, err)
	}
	for _, bad := range []string{"", "hk_", "hk_nope", plain + "x", strings.ToUpper(plain), strings.Repeat("a", 500)} {
		if _, err := s.Verify(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Fatalf("Verify(%q) = %v, want ErrInvalid", bad, err)
		}
	}
	if err := s.Revoke(ctx, k.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(ctx, k.ID); err != nil {
		t.Fatalf("second revoke: %v", err)
	}
	if _, err := s.Verify(ctx, plain); !errors.Is(err, ErrInvalid) {
		t.Fatalf("revoked key: %v, want ErrInvalid", err)
	}
	if err := s.Revoke(ctx, 999999); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoke unknown: %v, want ErrNotFound", err)
	}
	keys, err := s.List(ctx)
	if err != nil || len(keys) != 1 || keys[0].RevokedAt == nil {
		t.Fatalf("List = %+v, %v", keys, err)
	}
}
