package testenv

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"
)

// innodbLayout must be the same when the template is made and when a copy is served: InnoDB
// refuses to open a system tablespace of a different size. The sizes are far below the defaults
// (12M and 96M) so that a copy is about 20 MB.
const innodbLayout = "--innodb-data-file-path=ibdata1:10M:autoextend --innodb-log-file-size=8M"

// commonFlags are the flags of both mariadb-install-db and mariadbd.
func commonFlags() []string {
	flags := strings.Fields(innodbLayout)
	if os.Geteuid() == 0 {
		// mariadbd refuses to run as root without this. Others run it as themselves and pass no
		// --user, with which mariadb-install-db would try to chown the data directory.
		flags = append(flags, "--user=root")
	}
	return flags
}

// MySQL is a private MariaDB server. Its data directory survives Restart.
type MySQL struct {
	Addr string // 127.0.0.1:port
	// DSN connects as root, without a password, to the database "herald", in go-sql-driver/mysql
	// form with parseTime=true.
	DSN string

	srv server
}

// StartMySQL starts mariadbd on a free loopback port. Its data lives in dir/data, copied from an
// initialised template kept in the user's cache directory, or reused if dir/data already exists;
// the log is dir/mariadb.log. The database "herald" exists when it returns. ctx bounds only the
// start; the server runs until Stop.
func StartMySQL(ctx context.Context, dir string) (*MySQL, error) {
	mariadbd, err := findProgram("mariadbd", "mariadb-server")
	if err != nil {
		return nil, err
	}
	if dir, err = prepareDir(dir); err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, "data")
	// At start-up mariadbd deletes every #sql* file in its tmpdir, which would include the
	// temporary tables of other servers sharing /tmp.
	tmpDir := filepath.Join(dir, "tmp")
	if err := os.MkdirAll(tmpDir, 0o755); err != nil {
		return nil, err
	}
	if _, err := os.Stat(dataDir); errors.Is(err, os.ErrNotExist) {
		tmpl, err := mariadbTemplate(ctx, mariadbd)
		if err != nil {
			return nil, err
		}
		// Copied under another name first, so that an interrupted copy is never mistaken for a
		// data directory to reuse.
		partial := dataDir + ".partial"
		_ = os.RemoveAll(partial)
		if out, err := exec.Command("cp", "-a", tmpl, partial).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("copy MariaDB template: %v: %s", err, out)
		}
		if err := os.Rename(partial, dataDir); err != nil {
			return nil, err
		}
	}
	m := &MySQL{}
	m.srv.start = func(ctx context.Context, port int) (*process, error) {
		socket := filepath.Join(dir, "mysqld.sock")
		if len(socket) > 100 {
			// sun_path holds 108 bytes. The port is ours while the server runs, so the name is
			// unique, and mariadbd removes a stale file left by an earlier run.
			socket = filepath.Join(os.TempDir(), fmt.Sprintf("herald-mariadb-%d.sock", port))
		}
		args := append([]string{
			"--no-defaults", // must come first; keeps /etc/mysql out of it
			"--port=" + strconv.Itoa(port),
			"--bind-address=127.0.0.1",
			"--socket=" + socket,
			"--datadir=" + dataDir,
			"--pid-file=" + filepath.Join(dir, "mariadbd.pid"),
			"--tmpdir=" + tmpDir,
			"--skip-name-resolve",
			"--skip-log-bin",
			"--character-set-server=utf8mb4",
			// Small and fast rather than durable: a crash may lose the last second of commits.
			"--innodb-buffer-pool-size=32M",
			"--innodb-flush-log-at-trx-commit=2",
			"--performance-schema=OFF",
			// The default 2000 asks for more open files than the 20,000 a process may have here.
			"--table-open-cache=400",
		}, commonFlags()...)
		c := command{
			name: "mariadbd",
			path: mariadbd,
			args: args,
			dir:  dir,
			log:  filepath.Join(dir, "mariadb.log"), // without --log-error, errors go to stderr
		}
		return launch(ctx, c, func(ctx context.Context, p *process) error {
			return readyMySQL(ctx, port, socket)
		})
	}
	if err := m.srv.startFirst(ctx); err != nil {
		return nil, err
	}
	m.Addr = loopback(m.srv.port)
	m.DSN = rootDSN("tcp", m.Addr, "herald")
	return m, nil
}

func rootDSN(network, addr, db string) string {
	cfg := mysql.NewConfig()
	cfg.User = "root"
	cfg.Net = network
	cfg.Addr = addr
	cfg.DBName = db
	cfg.ParseTime = true
	return cfg.FormatDSN()
}

// readyMySQL logs in as root over TCP, checks the server is ours and creates the database.
func readyMySQL(ctx context.Context, port int, socket string) error {
	db, err := sql.Open("mysql", rootDSN("tcp", loopback(port), ""))
	if err != nil {
		return err
	}
	defer db.Close()
	err = db.PingContext(ctx)
	var myErr *mysql.MySQLError
	if errors.As(err, &myErr) && (myErr.Number == 1045 || myErr.Number == 1130) {
		// Access denied, or no root account for 127.0.0.1: the server runs, but the accounts
		// do not let root in over TCP. The socket reaches root@localhost, which may create it.
		if err = allowRootOverTCP(ctx, socket); err == nil {
			err = db.PingContext(ctx)
		}
	}
	if err != nil {
		return err
	}
	var serverSocket string
	if err := db.QueryRowContext(ctx, "SELECT @@socket").Scan(&serverSocket); err != nil {
		return err
	}
	if serverSocket != socket {
		return fmt.Errorf("mariadb at port %d: %w", port, errNotOurs)
	}
	_, err = db.ExecContext(ctx, "CREATE DATABASE IF NOT EXISTS herald")
	return err
}

func allowRootOverTCP(ctx context.Context, socket string) error {
	db, err := sql.Open("mysql", rootDSN("unix", socket, ""))
	if err != nil {
		return err
	}
	defer db.Close()
	for _, q := range []string{
		"CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''",
		"ALTER USER 'root'@'127.0.0.1' IDENTIFIED BY ''", // in case it exists with a password
		"GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION",
	} {
		if _, err := db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("let root in over TCP through %s: %w", socket, err)
		}
	}
	return nil
}

// mariadbTemplate returns an initialised data directory for this mariadbd version, making it
// once. Test binaries run in parallel, so it is built beside its final place and renamed into
// it: a reader sees a complete template or none.
func mariadbTemplate(ctx context.Context, mariadbd string) (string, error) {
	out, err := exec.Command(mariadbd, "--version").Output()
	if err != nil {
		return "", fmt.Errorf("%s --version: %w", mariadbd, err)
	}
	// "mariadbd  Ver 10.11.19-MariaDB-0+deb12u1 for debian-linux-gnu on x86_64 (Debian 12)"
	version := "unknown"
	if f := strings.Fields(string(out)); len(f) >= 3 {
		version = f[2]
	}
	layout := sha256.Sum256([]byte(innodbLayout))
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	parent := filepath.Join(cache, "herald")
	tmpl := filepath.Join(parent, fmt.Sprintf("mariadb-template-%s-%x", version, layout[:4]))
	exists := func() bool {
		_, err := os.Stat(filepath.Join(tmpl, "mysql"))
		return err == nil
	}
	if exists() {
		return tmpl, nil
	}

	installDB, err := findProgram("mariadb-install-db", "mariadb-server")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return "", err
	}
	// The lock only saves duplicate work when many tests start at once with a cold cache; the
	// rename is what keeps a half-made template (say, of a killed process) out of sight.
	lock, err := os.OpenFile(filepath.Join(parent, "mariadb-template.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", err
	}
	defer lock.Close() // releases the flock
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", err
	}
	if exists() {
		return tmpl, nil
	}
	build, err := os.MkdirTemp(parent, ".building-mariadb-template-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(build) // the data directory itself is gone after a successful rename
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	args := append([]string{
		"--no-defaults",
		"--datadir=" + filepath.Join(build, "data"),
		"--tmpdir=" + build,
		"--auth-root-authentication-method=normal", // root without a password, not unix_socket
		"--skip-test-db",
	}, commonFlags()...)
	if out, err := exec.CommandContext(ctx, installDB, args...).CombinedOutput(); err != nil {
		return "", fmt.Errorf("mariadb-install-db: %v\n%s", err, out)
	}
	if err := os.Rename(filepath.Join(build, "data"), tmpl); err != nil {
		return "", fmt.Errorf("install MariaDB template: %w", err)
	}
	return tmpl, nil
}

// Stop shuts the server down cleanly and waits for its process to exit. It may be called more than
// once.
func (m *MySQL) Stop() error { return m.srv.stop() }

// Restart stops the server if it runs and starts it again on the same port and data directory.
func (m *MySQL) Restart(ctx context.Context) error { return m.srv.restart(ctx) }

// NewMySQL starts a MariaDB in a temporary directory for the test and stops it when the test ends.
func NewMySQL(t testing.TB) *MySQL {
	t.Helper()
	m, err := StartMySQL(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := m.Stop(); err != nil {
			t.Error(err)
		}
	})
	return m
}

// PID is the server's process id (0 while stopped), for tools that measure what it costs.
func (x *MySQL) PID() int { return x.srv.pid() }
