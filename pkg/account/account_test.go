package account

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"

	"github.com/heraldpush/herald/pkg/mysqldb"
	"github.com/heraldpush/herald/pkg/testenv"
	"golang.org/x/crypto/bcrypt"
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
	s, err := NewStore(db, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, "alice", "pw-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.Create(ctx, "alice", "other"); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate create: %v, want ErrExists", err)
	}
	if err := s.Create(ctx, "Alice", "pw"); err != nil {
		t.Fatalf("uids are case-sensitive, but Alice collided: %v", err)
	}
	var hash string
	if err := db.QueryRowContext(ctx, "SELECT password_hash FROM accounts WHERE uid = 'alice'").Scan(&hash); err != nil || hash == "pw-1" {
		t.Fatalf("password stored as %q (%v)", hash, err)
	}

	steps := []struct {
		name string
		do   func() error
		uid  string
		pw   string
		want error
	}{
		{name: "right password", uid: "alice", pw: "pw-1", want: nil},
		{name: "wrong password", uid: "alice", pw: "pw-2", want: ErrBadCredentials},
		{name: "unknown uid", uid: "bob", pw: "pw-1", want: ErrBadCredentials},
		{name: "disabled", do: func() error { return s.SetDisabled(ctx, "alice", true) }, uid: "alice", pw: "pw-1", want: ErrDisabled},
		{name: "disabled, wrong password", uid: "alice", pw: "nope", want: ErrBadCredentials},
		{name: "disable twice", do: func() error { return s.SetDisabled(ctx, "alice", true) }, uid: "alice", pw: "pw-1", want: ErrDisabled},
		{name: "re-enabled", do: func() error { return s.SetDisabled(ctx, "alice", false) }, uid: "alice", pw: "pw-1", want: nil},
		{name: "password reset", do: func() error { return s.SetPassword(ctx, "alice", "pw-3") }, uid: "alice", pw: "pw-3", want: nil},
		{name: "old password after reset", uid: "alice", pw: "pw-1", want: ErrBadCredentials},
	}
	for _, st := range steps {
		if st.do != nil {
			if err := st.do(); err != nil {
				t.Fatalf("%s: %v", st.name, err)
			}
		}
		if err := s.Authenticate(ctx, st.uid, st.pw); !errors.Is(err, st.want) {
			t.Fatalf("%s: Authenticate = %v, want %v", st.name, err, st.want)
		}
	}
	if err := s.SetDisabled(ctx, "nobody", true); !errors.Is(err, ErrNotFound) {
		t.Fatalf("disable unknown: %v, want ErrNotFound", err)
	}
	if err := s.SetPassword(ctx, "nobody", "x"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("reset unknown: %v, want ErrNotFound", err)
	}
}
