package archive

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/go-sql-driver/mysql"
	"github.com/heraldpush/herald/pkg/wire"
	"github.com/segmentio/kafka-go"
)

// Reasons a record is skipped, the values of the skipped metric's label.
const (
	reasonBadJSON      = "bad_json"      // the value is not a JSON object of an UpstreamRecord
	reasonMissingField = "missing_field" // no id or no uid
	reasonBadField     = "bad_field"     // a field does not fit its column (length, not printable ASCII)
	reasonRejected     = "rejected"      // MySQL refused the row on its own
)

var skipReasons = []string{reasonBadJSON, reasonMissingField, reasonBadField, reasonRejected}

// The columns' sizes in migrations/00003_upstream.sql. A value that does not fit would fail the
// whole batch's statement over and over (strict SQL mode), holding up its partition for good, so
// such a record is skipped before it gets there.
const (
	maxIDLen     = 64
	maxUIDLen    = 128
	maxDeviceLen = 128
	maxConnIDLen = 255
	maxNodeLen   = 128
)

const (
	// maxRowsPerStatement and maxStatementBytes bound one INSERT: far below MySQL's 65,535
	// placeholders and its max_allowed_packet (16 MiB by default), which a batch of records with
	// large data could otherwise pass. A batch bigger than that is several statements of one
	// transaction.
	maxRowsPerStatement = 500
	maxStatementBytes   = 4 << 20
	columnsPerRow       = 9
)

// row is one record to store, with where it came from.
type row struct {
	rec       wire.UpstreamRecord
	partition int
	offset    int64
}

// parseRecord decodes and checks a record's value. On failure it says why, as a skip reason.
func parseRecord(m kafka.Message) (row, string, error) {
	var rec wire.UpstreamRecord
	if err := json.Unmarshal(m.Value, &rec); err != nil {
		return row{}, reasonBadJSON, fmt.Errorf("decode value: %w", err)
	}
	if rec.ID == "" || rec.UID == "" {
		return row{}, reasonMissingField, errors.New("record without id or uid")
	}
	for _, f := range []struct {
		name, value string
		max         int
	}{
		{"id", rec.ID, maxIDLen},
		{"uid", rec.UID, maxUIDLen},
		{"device", rec.Device, maxDeviceLen},
		{"conn_id", rec.ConnID, maxConnIDLen},
		{"node", rec.Node, maxNodeLen},
	} {
		if len(f.value) > f.max {
			return row{}, reasonBadField, fmt.Errorf("%s is %d bytes long, more than %d", f.name, len(f.value), f.max)
		}
		if !printableASCII(f.value) {
			return row{}, reasonBadField, fmt.Errorf("%s is not printable ASCII", f.name)
		}
	}
	if len(rec.Data) == 0 {
		rec.Data = json.RawMessage("null") // the column is NOT NULL; a record without data has JSON null
	}
	return row{rec: rec, partition: m.Partition, offset: m.Offset}, "", nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

type rejectedRow struct {
	row row
	err error
}

type storeResult struct {
	inserted int           // rows new to the table; the others were there already
	rejected []rejectedRow // rows MySQL refused, skipped
}

// store writes rows in one transaction, leaving rows whose id is already stored as they are. If
// MySQL refuses a row for its content, which fails its whole statement, store writes the rows one
// at a time and skips those refused. Any other error means nothing was stored.
func (a *Archiver) store(ctx context.Context, rows []row) (storeResult, error) {
	if len(rows) == 0 {
		return storeResult{}, nil
	}
	// Two archivers overlapping on a batch (a rebalance, two admin instances) insert the same rows;
	// taking the row locks in one order (by id) keeps them from deadlocking.
	slices.SortFunc(rows, func(x, y row) int { return strings.Compare(x.rec.ID, y.rec.ID) })
	n, err := insertBatch(ctx, a.db, rows)
	if err == nil {
		return storeResult{inserted: n}, nil
	}
	if !isRowError(err) {
		return storeResult{}, err
	}
	var res storeResult
	for _, rw := range rows {
		n, err := insertRows(ctx, a.db, []row{rw})
		switch {
		case err == nil:
			res.inserted += n
		case isRowError(err):
			res.rejected = append(res.rejected, rejectedRow{row: rw, err: err})
		default:
			return storeResult{}, err
		}
	}
	return res, nil
}

// insertBatch inserts rows in one transaction and returns how many were new.
func insertBatch(ctx context.Context, db *sql.DB, rows []row) (int, error) {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return 0, fmt.Errorf("begin: %w", err)
	}
	defer tx.Rollback() //nolint:errcheck // a no-op after Commit
	inserted := 0
	for len(rows) > 0 {
		n := statementRows(rows)
		got, err := insertRows(ctx, tx, rows[:n])
		if err != nil {
			return 0, err
		}
		inserted += got
		rows = rows[n:]
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("commit: %w", err)
	}
	return inserted, nil
}

// statementRows is how many of rows the next statement takes: at least one.
func statementRows(rows []row) int {
	size := 0
	for i, rw := range rows {
		r := &rw.rec
		size += len(r.ID) + len(r.UID) + len(r.Device) + len(r.ConnID) + len(r.Node) + len(r.Data) + 64
		if i > 0 && (i == maxRowsPerStatement || size > maxStatementBytes) {
			return i
		}
	}
	return len(rows)
}

type execer interface {
	ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error)
}

// insertRows inserts rows in one statement and returns how many were new. A row whose id is
// stored already is left as it is: ON DUPLICATE KEY UPDATE with a no-op rather than INSERT
// IGNORE, which would also turn a value that does not fit into a silently truncated one.
func insertRows(ctx context.Context, db execer, rows []row) (int, error) {
	var q strings.Builder
	q.WriteString("INSERT INTO upstream_messages (id, uid, device, conn_id, node, ts, data, kafka_partition, kafka_offset) VALUES ")
	args := make([]any, 0, len(rows)*columnsPerRow)
	for i, rw := range rows {
		if i > 0 {
			q.WriteByte(',')
		}
		q.WriteString("(?,?,?,?,?,?,?,?,?)")
		r := &rw.rec
		args = append(args, r.ID, r.UID, r.Device, r.ConnID, r.Node, r.TS, []byte(r.Data), rw.partition, rw.offset)
	}
	q.WriteString(" ON DUPLICATE KEY UPDATE id = id")
	res, err := db.ExecContext(ctx, q.String(), args...)
	if err != nil {
		return 0, fmt.Errorf("insert upstream_messages: %w", err)
	}
	// Without CLIENT_FOUND_ROWS (the driver's default) a duplicate left unchanged counts 0.
	n, err := res.RowsAffected()
	if err != nil {
		return 0, fmt.Errorf("insert upstream_messages: rows affected: %w", err)
	}
	return int(n), nil
}

// isRowError tells whether MySQL refused a statement for the content of a row, so that trying
// again cannot help, rather than for being unreachable, busy or misconfigured.
func isRowError(err error) bool {
	if errors.Is(err, mysql.ErrPktTooLarge) {
		return true
	}
	var me *mysql.MySQLError
	if !errors.As(err, &me) {
		return false
	}
	switch me.Number {
	case 1048, // column cannot be null
		1153, // packet bigger than max_allowed_packet
		1264, // out of range value
		1265, // data truncated
		1292, // incorrect value
		1366, // incorrect string value (charset)
		1406: // data too long for column
		return true
	}
	return false
}
