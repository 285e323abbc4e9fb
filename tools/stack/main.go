// Command stack runs the whole of Herald on one machine: private ZooKeeper, Redis and MariaDB servers,
// an in-process Kafka-protocol broker, and every Herald service as a child process. It prints the URLs
// and development credentials, writes them to .herald/stack.json for scripts and tools, and stops
// everything on Ctrl-C or SIGTERM.
//
// With -cluster (make run-cluster) it runs the same at production shape: a ZooKeeper ensemble of
// three, a Redis Cluster of three masters with a replica each, three Kafka-protocol brokers, and
// several instances of every service, so that failures can be tried where users meet them.
//
// It expects the service binaries in -bin (make run builds them there first).
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/heraldpush/herald/pkg/config"
	"github.com/heraldpush/herald/pkg/service"
	"github.com/heraldpush/herald/pkg/testenv"
	"github.com/heraldpush/herald/tools/internal/stackfile"
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
	// cluster runs the production-shaped stack (see the package comment).
	cluster bool
	// clients is the directory of the browser client (clients/js), which the demo app serves.
	clients string
	// prometheus starts Prometheus beside the stack with prometheusRules, deploy/prometheus's alerts.
	prometheus      bool
	prometheusRules string
}

// demoAddr is where the demo web app listens (8091 by default); auth lets pages from it log in.
func (o options) demoAddr() string { return o.addr(11, false) }

// addr is the loopback address of the service port at offset from the base port. Public listeners
// sit at base+offset, internal ones 1000 above: 8080 push-route, 8081 auth, 8082 and 8083 the
// push-servers, 8090 admin by default, so the README's examples work against any local stack; the
// stack's own control API is at 9099. The cluster-shaped stack adds ps-3 at 8084, push-route-2 at
// 8085 and auth-2 at 8086 (see newLayout). The private servers take free ports, because nothing
// outside the stack needs to guess them.
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
	fs.StringVar(&o.clients, "clients", "clients/js", "directory of the browser client (herald.js), served with the demo web app")
	fs.BoolVar(&o.prometheus, "prometheus", false, "also run Prometheus (Debian's package) scraping the stack with deploy/prometheus's alert rules; its URL is printed and in stack.json")
	fs.StringVar(&o.prometheusRules, "prometheus-rules", "deploy/prometheus/alerts.yml", "the alert rules -prometheus loads")
	fs.BoolVar(&o.cluster, "cluster", false, "run at production shape: a ZooKeeper ensemble of 3, a Redis Cluster of 3 masters with a replica each, 3 Kafka-protocol brokers, and several instances of every service")
	if err := config.Parse(fs, args, getenv); err != nil {
		return err
	}
	logger, err := service.NewLogger(stdout, "info")
	if err != nil {
		return err
	}
	logger = logger.With("service", "stack")
	clientJS, err := os.ReadFile(filepath.Join(o.clients, "herald.js"))
	if err != nil {
		return fmt.Errorf("the browser client for the demo app: %w (run from the repository root, or set -clients)", err)
	}

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
	infra, err := startInfra(servers, logger, o.cluster)
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
		for name, pid := range infra.pids() {
			s.PIDs[name] = pid
		}
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
	if err := serveHTTP(ctx, logger, controlAddr, control(logger, infra, func() {
		if err := writePIDs(); err != nil {
			logger.Error("rewrite stack.json", "err", err)
		}
	})); err != nil {
		return fmt.Errorf("control listener: %w", err)
	}
	started.ControlURL = "http://" + controlAddr
	if err := serveHTTP(ctx, logger, o.demoAddr(), demo(logger, clientJS, started)); err != nil {
		return fmt.Errorf("demo listener: %w", err)
	}
	started.DemoURL = "http://" + o.demoAddr() + "/"
	if o.prometheus {
		if started.PrometheusURL, err = startPrometheus(ctx, logger, o, started); err != nil {
			return err
		}
	}
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
	if s.RedisCluster {
		printClusterStack(w, s, path)
		return
	}
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
	if s.PrometheusURL != "" {
		fmt.Fprintf(w, "  prometheus    %s   (the stack's metrics and deploy/prometheus's alerts)\n", s.PrometheusURL)
	}
	if s.DemoURL != "" {
		fmt.Fprintf(w, "  demo app      %s   (a web page that receives pushes: open it in a browser)\n", s.DemoURL)
	}
	fmt.Fprintf(w, "  API key       %s\n", s.APIKey)
	fmt.Fprintf(w, "  demo account  uid %s, password %s\n", s.DemoUID, s.DemoPassword)
	fmt.Fprintf(w, "  redis %s  zookeeper %s  kafka %v\n  mysql %s\n", s.RedisAddr, s.ZooKeeper, s.KafkaBrokers, s.MySQLDSN)
	fmt.Fprintln(w, "Ctrl-C stops everything.")
}

// printClusterStack is printStack for the cluster-shaped stack, which names every instance.
func printClusterStack(w io.Writer, s Stack, path string) {
	fmt.Fprintf(w, "\nHerald is up at production shape (details in %s):\n", path)
	for i, u := range s.AuthURLs {
		fmt.Fprintf(w, "  %-13s %s   (POST /v1/login, POST /v1/tokens)\n", fmt.Sprintf("auth-%d", i+1), u)
	}
	for i, u := range s.PushAPIURLs {
		fmt.Fprintf(w, "  %-13s %s   (push API)\n", fmt.Sprintf("push-route-%d", i+1), u)
	}
	fmt.Fprintf(w, "  admin         %s   (user %s, password %s)\n", s.AdminURL, s.AdminUser, s.AdminPassword)
	for _, ps := range s.PushServers {
		fmt.Fprintf(w, "  push-server   %s %s\n", ps.ID, ps.WSURL)
	}
	fmt.Fprintf(w, "  API key       %s\n", s.APIKey)
	fmt.Fprintf(w, "  demo account  uid %s, password %s\n", s.DemoUID, s.DemoPassword)
	fmt.Fprintf(w, "  redis cluster %s\n", strings.Join(s.RedisAddrs, ","))
	fmt.Fprintf(w, "  zookeeper     %s\n", s.ZooKeeper)
	fmt.Fprintf(w, "  kafka         %s\n", strings.Join(s.KafkaBrokers, ","))
	fmt.Fprintf(w, "  mysql         %s\n", s.MySQLDSN)
	fmt.Fprintf(w, "  control       %s   (GET /servers, POST /servers/{name}/stop|start, GET /redis/master?key=K)\n", s.ControlURL)
	fmt.Fprintln(w, "Ctrl-C stops everything.")
}
