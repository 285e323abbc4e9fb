// Command stack runs the whole of Herald on one machine: private ZooKeeper, Redis and MariaDB servers,
// an in-process Kafka-protocol broker, and every Herald service as a child process. It prints the URLs
// and development credentials, writes them to .herald/stack.json for scripts and tools, and stops
// everything on Ctrl-C or SIGTERM.
//
// It expects the service binaries in -bin (make run builds them there first).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"github.com/heraldpush/herald/tools/internal/stackfile"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/heraldpush/herald/pkg/config"
	"github.com/heraldpush/herald/pkg/service"
	"github.com/heraldpush/herald/pkg/testenv"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Getenv, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "stack:", err)
		os.Exit(1)
	}
}

// Stack and PushServer are stack.json's layout, owned by stackfile so the tools that read it agree.
type (
	Stack      = stackfile.Stack
	PushServer = stackfile.PushServer
)

type options struct {
	dir      string
	bin      string
	logLevel string
	basePort int
	// restartDelay is how long a service that died waits before it is started again (0: never).
	restartDelay time.Duration
}

// addr is the loopback address of the service port at offset from the base port. Public listeners
// sit at base+offset, internal ones 1000 above: 8080 push-route, 8081 auth, 8082 and 8083 the
// push-servers, 8090 admin by default, so the README's examples work against any local stack; the
// stack's own control API is at 9099. The
// private servers take free ports, because nothing outside the stack needs to guess them.
func (o options) addr(offset int, internal bool) string {
	p := o.basePort + offset
	if internal {
		p += 1000
	}
	return fmt.Sprintf("127.0.0.1:%d", p)
}

func run(ctx context.Context, args []string, getenv func(string) string, stdout io.Writer) error {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()

	var o options
	fs := flag.NewFlagSet("stack", flag.ContinueOnError)
	fs.StringVar(&o.dir, "dir", ".herald", "where the stack keeps its state, keys, logs and stack.json")
	fs.StringVar(&o.bin, "bin", ".herald/bin", "directory holding the service binaries")
	fs.StringVar(&o.logLevel, "log-level", "info", "log level of the services")
	fs.DurationVar(&o.restartDelay, "restart-delay", 2*time.Second, "restart a service that died after this long (0: report it and leave it down)")
	fs.IntVar(&o.basePort, "base-port", 8080, "first public port of the services (internal ports are 1000 above)")
	if err := config.Parse(fs, args, getenv); err != nil {
		return err
	}
	logger, err := service.NewLogger(stdout, "info")
	if err != nil {
		return err
	}
	logger = logger.With("service", "stack")

	// Every run starts from empty data: a local stack is for trying things, and a clean start means a
	// known state.
	dataDir := filepath.Join(o.dir, "data")
	if err := os.RemoveAll(dataDir); err != nil {
		return err
	}
	servers := testenv.NewGroup(ctx, dataDir)
	defer func() {
		if err := servers.Stop(); err != nil {
			logger.Error("stopping servers", "err", err)
		}
	}()
	infra, err := startInfra(servers, logger)
	if err != nil {
		return err
	}
	creds, err := seed(ctx, infra.mysql.DSN, o.dir)
	if err != nil {
		return err
	}

	stackFile := filepath.Join(o.dir, "stack.json")
	var stack Stack
	var stackMu sync.Mutex // guards stack until it is set; a restart rewrites stack.json's pids
	var procs *supervisor
	writePIDs := func() error {
		stackMu.Lock()
		defer stackMu.Unlock()
		s := stack
		s.PIDs = procs.pids()
		s.PIDs["stack"] = os.Getpid()
		s.PIDs["redis-server"] = infra.redis.PID()
		s.PIDs["mariadbd"] = infra.mysql.PID()
		s.PIDs["zookeeper"] = infra.zk.PID()
		return writeStack(stackFile, s)
	}
	procs = newSupervisor(logger, o.bin, filepath.Join(o.dir, "logs"), stdout, o.restartDelay, func() {
		if err := writePIDs(); err != nil {
			logger.Error("rewrite stack.json", "err", err)
		}
	})
	defer procs.stopAll(15 * time.Second)
	started, err := startServices(ctx, procs, infra, creds, o)
	if err != nil {
		return err
	}
	controlAddr := o.addr(19, true)
	if err := serveControl(ctx, logger, controlAddr, control(logger, infra, func() {
		if err := writePIDs(); err != nil {
			logger.Error("rewrite stack.json", "err", err)
		}
	})); err != nil {
		return fmt.Errorf("control listener: %w", err)
	}
	started.ControlURL = "http://" + controlAddr
	stackMu.Lock()
	stack = started
	stackMu.Unlock()
	if err := writePIDs(); err != nil {
		return err
	}
	procs.running()
	printStack(stdout, stack, stackFile)

	<-ctx.Done()
	logger.Info("stopping the stack")
	return nil
}

type infra struct {
	mysql *testenv.MySQL
	zk    *testenv.ZooKeeper
	redis *testenv.Redis
	kafka *testenv.Kafka
}

func startInfra(g *testenv.Group, logger *slog.Logger) (infra, error) {
	var in infra
	var err error
	if in.zk, err = g.ZooKeeper(); err != nil {
		return in, fmt.Errorf("zookeeper: %w", err)
	}
	if in.redis, err = g.Redis(); err != nil {
		return in, fmt.Errorf("redis: %w", err)
	}
	if in.mysql, err = g.MySQL(); err != nil {
		return in, fmt.Errorf("mysql: %w", err)
	}
	if in.kafka, err = g.Kafka("herald.upstream"); err != nil {
		return in, fmt.Errorf("kafka: %w", err)
	}
	logger.Info("servers up", "zookeeper", in.zk.Addr, "redis", in.redis.Addr, "mysql", in.mysql.Addr, "kafka", in.kafka.Brokers)
	return in, nil
}

func writeStack(path string, s Stack) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func printStack(w io.Writer, s Stack, path string) {
	fmt.Fprintf(w, "\nHerald is up (details in %s):\n", path)
	fmt.Fprintf(w, "  auth          %s   (POST /v1/login, POST /v1/tokens)\n", s.AuthURL)
	if s.PushAPIURL != "" {
		fmt.Fprintf(w, "  push API      %s\n", s.PushAPIURL)
	}
	if s.AdminURL != "" {
		fmt.Fprintf(w, "  admin         %s   (user %s, password %s)\n", s.AdminURL, s.AdminUser, s.AdminPassword)
	}
	for _, ps := range s.PushServers {
		fmt.Fprintf(w, "  push-server   %s %s\n", ps.ID, ps.WSURL)
	}
	fmt.Fprintf(w, "  API key       %s\n", s.APIKey)
	fmt.Fprintf(w, "  demo account  uid %s, password %s\n", s.DemoUID, s.DemoPassword)
	fmt.Fprintf(w, "  redis %s  zookeeper %s  kafka %v\n  mysql %s\n", s.RedisAddr, s.ZooKeeper, s.KafkaBrokers, s.MySQLDSN)
	fmt.Fprintln(w, "Ctrl-C stops everything.")
}
