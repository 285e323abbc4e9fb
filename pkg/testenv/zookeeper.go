package testenv

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// zooKeeperJar is where the Debian package puts the server; its manifest Class-Path names the
// other jars it needs, so only a logging backend has to be added.
const zooKeeperJar = "/usr/share/java/zookeeper.jar"

// ZooKeeper is a private standalone ZooKeeper 3.8. Its data directory survives Restart.
type ZooKeeper struct {
	Addr string // 127.0.0.1:port, usable as a connect string

	srv server
}

// StartZooKeeper starts a standalone ZooKeeper on a free loopback port with zoo.cfg, its data and
// zookeeper.log in dir. ctx bounds only the start; the server runs until Stop.
func StartZooKeeper(ctx context.Context, dir string) (*ZooKeeper, error) {
	if _, err := os.Stat(zooKeeperJar); err != nil {
		return nil, &MissingError{Program: zooKeeperJar, Package: "zookeeper"}
	}
	// The zookeeper package depends on a JRE, so java is missing only if that was removed.
	java, err := findProgram("java", "default-jre-headless")
	if err != nil {
		return nil, err
	}
	if dir, err = prepareDir(dir); err != nil {
		return nil, err
	}
	dataDir := filepath.Join(dir, "data")
	z := &ZooKeeper{}
	z.srv.start = func(ctx context.Context, port int) (*process, error) {
		cfg := filepath.Join(dir, "zoo.cfg")
		if err := os.WriteFile(cfg, []byte(zooCfg(dataDir, port)), 0o644); err != nil {
			return nil, err
		}
		c := command{
			name: "zookeeper",
			path: java,
			args: []string{
				// A small serial-GC JVM that skips the optimising JIT starts in about 0.3 s and
				// is plenty for a test server.
				"-Xmx256m", "-XX:+UseSerialGC", "-XX:TieredStopAtLevel=1",
				"-Dorg.slf4j.simpleLogger.defaultLogLevel=warn",
				"-cp", zooKeeperJar + ":/usr/share/java/slf4j-simple.jar",
				"org.apache.zookeeper.server.ZooKeeperServerMain", cfg,
			},
			dir: dir,
			log: filepath.Join(dir, "zookeeper.log"),
		}
		return launch(ctx, c, func(ctx context.Context, p *process) error {
			return pingZooKeeper(ctx, loopback(port), dataDir)
		})
	}
	if err := z.srv.startFirst(ctx); err != nil {
		return nil, err
	}
	z.Addr = loopback(z.srv.port)
	return z, nil
}

// zooCfg uses tickTime=500 so that sessions from 1 s to 10 s are allowed (the bounds are 2 and 20
// ticks): tests use short sessions to see expiry quickly.
func zooCfg(dataDir string, port int) string {
	return fmt.Sprintf(`tickTime=500
dataDir=%s
clientPort=%d
clientPortAddress=127.0.0.1
maxClientCnxns=0
admin.enableServer=false
4lw.commands.whitelist=ruok,srvr,mntr,conf
`, dataDir, port)
}

// pingZooKeeper asks ruok, which is answered as soon as the port is open, and then conf, which is
// answered only once the server serves requests and tells us whose data directory it uses.
func pingZooKeeper(ctx context.Context, addr, dataDir string) error {
	if out, err := fourLetterWord(ctx, addr, "ruok"); err != nil {
		return err
	} else if out != "imok" {
		return fmt.Errorf("zookeeper at %s: ruok answered %q", addr, out)
	}
	out, err := fourLetterWord(ctx, addr, "conf")
	if err != nil {
		return err
	}
	if !strings.Contains(out, "\ndataDir=") {
		return fmt.Errorf("zookeeper at %s not serving yet: %s", addr, strings.TrimSpace(out))
	}
	if !strings.Contains(out, "\ndataDir="+dataDir+string(filepath.Separator)) {
		return fmt.Errorf("zookeeper at %s: %w", addr, errNotOurs)
	}
	return nil
}

func fourLetterWord(ctx context.Context, addr, word string) (string, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	if _, err := io.WriteString(c, word); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c) // the server closes the connection after answering
	return string(b), err
}

// Stop shuts the server down and waits for its process to exit. It may be called more than once.
func (z *ZooKeeper) Stop() error { return z.srv.stop() }

// Restart stops the server if it runs and starts it again on the same port and data directory,
// so znodes and unexpired sessions survive.
func (z *ZooKeeper) Restart(ctx context.Context) error { return z.srv.restart(ctx) }

// NewZooKeeper starts a ZooKeeper in a temporary directory for the test and stops it when the test
// ends.
func NewZooKeeper(t testing.TB) *ZooKeeper {
	t.Helper()
	z, err := StartZooKeeper(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := z.Stop(); err != nil {
			t.Error(err)
		}
	})
	return z
}

// PID is the server's process id (0 while stopped), for tools that measure what it costs.
func (x *ZooKeeper) PID() int { return x.srv.pid() }
