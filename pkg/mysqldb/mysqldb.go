// Package mysqldb opens Herald's MySQL database and brings its schema up to date with the embedded
// migrations.
package mysqldb

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/heraldpush/herald/migrations"
	"github.com/pressly/goose/v3"
)

// IOTimeout bounds each read and write on a MySQL connection, and the dial, unless the DSN says
// otherwise (timeout, readTimeout, writeTimeout).
const IOTimeout = 5 * time.Second

// connect makes the pool for the database named by dsn (go-sql-driver/mysql form), without connecting
// yet. Times are parsed into
// time.Time in UTC whatever the DSN says, because every table stores UTC.
//
// Every read and write on a MySQL connection has a deadline (the DSN's readTimeout and writeTimeout,
// IOTimeout when it sets none), so a frozen or unreachable server costs a caller at most that long and
// then an error, which the services answer as 503 unavailable, never a hang. No Herald query runs
// for long; the migration lock, which may wait longer, is asked for in short steps.
func connect(dsn string) (*sql.DB, error) {
	cfg, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("mysql dsn: %w", err)
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params["time_zone"] = "'+00:00'"
	if cfg.Timeout == 0 {
		cfg.Timeout = IOTimeout
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = IOTimeout
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = IOTimeout
	}
	connector, err := mysql.NewConnector(cfg)
	if err != nil {
		return nil, fmt.Errorf("mysql connector: %w", err)
	}
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(32)
	db.SetMaxIdleConns(16)
	db.SetConnMaxLifetime(5 * time.Minute)
	return db, nil
}

// Open connects to the database named by dsn (see connect) and checks that it answers.
func Open(ctx context.Context, dsn string) (*sql.DB, error) {
	db, err := connect(dsn)
	if err != nil {
		return nil, err
	}
	pingCtx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := db.PingContext(pingCtx); err != nil {
		db.Close()
		return nil, fmt.Errorf("mysql ping: %w", err)
	}
	return db, nil
}

// Start is Open and Migrate for a service that must come up while MySQL is down: it returns the pool
// at once (an error only for a malformed DSN) and migrates in the background, trying again every
// second until it succeeds or ctx ends. ready is the service's readiness probe for MySQL: an error
// until the schema is up to date, then whether the server answers. Calls made before then fail as
// MySQL being down does (the services answer 503).
func Start(ctx context.Context, dsn string, logger *slog.Logger) (db *sql.DB, ready func(context.Context) error, err error) {
	db, err = connect(dsn)
	if err != nil {
		return nil, nil, err
	}
	var state struct {
		sync.Mutex
		err error // nil once migrated
	}
	state.err = errors.New("schema not migrated yet")
	go func() {
		for {
			err := Migrate(ctx, db, logger)
			state.Lock()
			state.err = err
			state.Unlock()
			if err == nil {
				return
			}
			logger.Warn("mysql not ready; trying again in 1s", "err", err)
			select {
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}()
	ready = func(ctx context.Context) error {
		state.Lock()
		err := state.err
		state.Unlock()
		if err != nil {
			return err
		}
		return db.PingContext(ctx)
	}
	return db, ready, nil
}

// Migrate applies every pending migration. Several services may start at once against one database,
// so the run holds a MySQL named lock: the others wait, then find nothing left to do.
func Migrate(ctx context.Context, db *sql.DB, logger *slog.Logger) error {
	conn, err := db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer conn.Close()
	// In steps of 2 s, each well under the read timeout, for up to a minute.
	var got sql.NullInt64
	for range 30 {
		if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK('herald_migrate', 2)").Scan(&got); err != nil {
			return fmt.Errorf("migrate: take lock: %w", err)
		}
		if got.Int64 == 1 {
			break
		}
	}
	if got.Int64 != 1 {
		return fmt.Errorf("migrate: another migration held the lock for 60s")
	}
	defer conn.ExecContext(context.WithoutCancel(ctx), "SELECT RELEASE_LOCK('herald_migrate')")

	provider, err := goose.NewProvider(goose.DialectMySQL, db, migrations.FS)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	results, err := provider.Up(ctx)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	for _, r := range results {
		logger.Info("migration applied", "version", r.Source.Version, "file", r.Source.Path, "took", r.Duration)
	}
	return nil
}
