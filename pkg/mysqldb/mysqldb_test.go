package mysqldb

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/heraldpush/herald/pkg/testenv"
)

func TestMigrateConcurrentlyAndTwice(t *testing.T) {
	ctx := context.Background()
	m := testenv.NewMySQL(t)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	// Several services starting at once against one fresh database.
	var wg sync.WaitGroup
	errs := make(chan error, 3)
	for range 3 {
		wg.Go(func() {
			db, err := Open(ctx, m.DSN)
			if err != nil {
				errs <- err
				return
			}
			defer db.Close()
			errs <- Migrate(ctx, db, logger)
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	db, err := Open(ctx, m.DSN)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := Migrate(ctx, db, logger); err != nil {
		t.Fatalf("second migrate: %v", err)
	}
	for _, table := range []string{"accounts", "api_keys", "admins"} {
		var n int
		if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?", table).Scan(&n); err != nil || n != 1 {
			t.Fatalf("table %s: count %d, %v", table, n, err)
		}
	}
}

func TestOpenFailsClearly(t *testing.T) {
	if _, err := Open(context.Background(), "not a dsn"); err == nil {
		t.Fatal("bad DSN accepted")
	}
	if _, err := Open(context.Background(), "root@tcp(127.0.0.1:1)/herald?timeout=1s"); err == nil {
		t.Fatal("unreachable server accepted")
	}
}

// TestFrozenServerFailsFast freezes MariaDB (SIGSTOP, as a stalled disk or a paused VM would): a query
// with no deadline of its own must fail within the I/O timeout, not hang, and the pool must work again
// once the server resumes.
func TestFrozenServerFailsFast(t *testing.T) {
	ctx := context.Background()
	m := testenv.NewMySQL(t)
	db, err := Open(ctx, m.DSN+"&readTimeout=1s&writeTimeout=1s")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	resume := testenv.Freeze(t, m.PID())
	start := time.Now()
	var one int
	err = db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
	if err == nil {
		t.Fatal("a query to a frozen server succeeded")
	}
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("the query failed only after %v", took)
	}
	resume()
	testenv.Eventually(t, "queries work again", func() error {
		return db.QueryRowContext(ctx, "SELECT 1").Scan(&one)
	})
}
