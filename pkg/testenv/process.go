// Package testenv starts private Redis, ZooKeeper, MariaDB and Kafka-protocol servers for tests and
// for the local stack.
//
// Redis, ZooKeeper and MariaDB are the real servers from the Debian packages, run as child
// processes on free 127.0.0.1 ports with their data and a log file in a directory of the caller's
// choice; Kafka is an in-process kfake cluster. Nothing is shared with a system-wide server, so
// tests and several stacks can run side by side.
//
// Besides single servers there is the production shape, for tests of failures where users meet
// them: a Redis Cluster (RedisCluster), a ZooKeeper ensemble of three (ZooKeeperEnsemble) and a
// Kafka-protocol cluster of several brokers (StartKafkaCluster). Each of their servers can be
// stopped and restarted on its own.
//
// Child processes are put in their own process group and get SIGKILL when the starting program
// dies (Pdeathsig), so an interrupted or timed-out test binary leaves no servers behind. Stop
// always waits until the process is gone.
//
// A missing server binary is reported as a *MissingError that names the Debian package;
// scripts/install-deps.sh installs all of them.
package testenv

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// readyTimeout bounds a start when the caller's context has no earlier deadline; every server
	// here is normally ready in well under a second, so reaching it means something is broken.
	readyTimeout = 30 * time.Second
	// stopTimeout is how long a server may shut down cleanly before it is killed.
	stopTimeout = 10 * time.Second
	// startAttempts covers the window between picking a free port and the server binding it, in
	// which another program may take the port.
	startAttempts = 3
)

var (
	// errEarlyExit means the server died during start-up, usually because its port was taken.
	errEarlyExit = errors.New("exited before it was ready")
	// errNotOurs means another server answered on the port we picked for ours.
	errNotOurs = errors.New("port answered by a different server")
)

// MissingError reports a server program that is not installed.
type MissingError struct {
	Program string // binary or file that was looked for
	Package string // Debian package that provides it
}

func (e *MissingError) Error() string {
	return fmt.Sprintf("%s not found: install the Debian package %s (scripts/install-deps.sh)", e.Program, e.Package)
}

// findProgram looks in PATH and then in the sbin directories, because mariadbd lives in /usr/sbin,
// which is often not on an ordinary user's PATH.
func findProgram(name, pkg string) (string, error) {
	if p, err := exec.LookPath(name); err == nil {
		return p, nil
	}
	for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", &MissingError{Program: name, Package: pkg}
}

// freePort asks the kernel for an unused port. The port is free only until someone else takes
// it, which is why server.startFirst retries with a new one.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("find a free port: %w", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// command describes one server process.
type command struct {
	name string // for messages
	path string
	args []string
	dir  string // working directory
	log  string // receives stdout and stderr, appended so that restarts keep the history
}

// process is a running child. done is closed once it has been waited for.
type process struct {
	name string
	log  string
	cmd  *exec.Cmd
	done chan struct{}
}

func (c command) start() (*process, error) {
	f, err := os.OpenFile(c.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	// The child gets its own copy of the descriptor, so ours can be closed right after Start.
	defer f.Close()
	fmt.Fprintf(f, "--- testenv %s: %s %s\n", time.Now().Format(time.RFC3339), c.path, strings.Join(c.args, " "))

	cmd := exec.Command(c.path, c.args...)
	cmd.Dir = c.dir
	cmd.Stdout, cmd.Stderr = f, f
	// A process group lets Stop reach anything the server forks; Pdeathsig kills the server
	// when this program dies without running Stop (Ctrl-C, test timeout, SIGKILL).
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", c.name, err)
	}
	p := &process{name: c.name, log: c.log, cmd: cmd, done: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // exit status is uninteresting: Stop is what ends it
		close(p.done)
	}()
	return p, nil
}

func (p *process) pid() int { return p.cmd.Process.Pid }

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the whole process group to terminate, kills it if it takes too long, and returns once
// the server has been waited for.
func (p *process) stop() error {
	pgid := p.pid()
	if err := syscall.Kill(-pgid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stop %s: %w", p.name, err)
	}
	select {
	case <-p.done:
		return nil
	case <-time.After(stopTimeout):
	}
	if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("kill %s: %w", p.name, err)
	}
	<-p.done
	return nil
}

// probe checks once whether the server answers. It returns an error wrapping errNotOurs when a
// different server answers, so that the start fails at once instead of waiting for the deadline.
type probe func(ctx context.Context, p *process) error

// launch starts the command and waits until probe succeeds. On failure the process is stopped and
// the error carries the tail of its log.
func launch(ctx context.Context, c command, ready probe) (*process, error) {
	p, err := c.start()
	if err != nil {
		return nil, err
	}
	if err := p.waitReady(ctx, ready); err != nil {
		_ = p.stop()
		return nil, fmt.Errorf("%w\n--- last lines of %s:\n%s", err, p.log, logTail(p.log))
	}
	return p, nil
}

func (p *process) waitReady(ctx context.Context, ready probe) error {
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	start := time.Now()
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		err := ready(pctx, p)
		pcancel()
		switch {
		case p.exited():
			return fmt.Errorf("%s %w", p.name, errEarlyExit)
		case err == nil:
			return nil
		case errors.Is(err, errNotOurs):
			return fmt.Errorf("%s: %w", p.name, err)
		}
		select {
		case <-p.done:
			return fmt.Errorf("%s %w", p.name, errEarlyExit)
		case <-ctx.Done():
			return fmt.Errorf("%s not ready after %v: %w", p.name, time.Since(start).Round(time.Millisecond), err)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// logTail returns the last lines of a log file for error messages.
func logTail(path string) string {
	const maxBytes, maxLines = 4096, 30
	f, err := os.Open(path)
	if err != nil {
		return err.Error()
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > maxBytes {
		_, _ = f.Seek(-maxBytes, io.SeekEnd)
	}
	b, _ := io.ReadAll(f)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > maxLines {
		lines = lines[len(lines)-maxLines:]
	}
	return strings.Join(lines, "\n")
}

// server holds what the process-backed servers share: the port chosen at the first start, kept
// for restarts, and the running process.
type server struct {
	start func(ctx context.Context, port int) (*process, error)

	mu   sync.Mutex
	port int
	proc *process // nil when stopped
}

// pid is the server's process id, 0 while it is stopped.
func (s *server) pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.pid()
}

// startFirst starts on a fresh port, retrying with another one if the server could not bind it.
func (s *server) startFirst(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var err error
	for range startAttempts {
		port, perr := freePort()
		if perr != nil {
			return perr
		}
		p, lerr := s.start(ctx, port)
		if lerr == nil {
			s.port, s.proc = port, p
			return nil
		}
		err = lerr
		portTaken := errors.Is(err, errEarlyExit) || errors.Is(err, errNotOurs)
		if !portTaken || ctx.Err() != nil {
			break
		}
	}
	return err
}

func (s *server) stop() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return nil
	}
	err := s.proc.stop()
	s.proc = nil
	return err
}

func (s *server) restart(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		if err := s.proc.stop(); err != nil {
			return err
		}
		s.proc = nil
	}
	p, err := s.start(ctx, s.port)
	if err != nil {
		return err
	}
	s.proc = p
	return nil
}

// running returns the current process, or nil; tests use it to check the process is gone.
func (s *server) running() *process {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.proc
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", fmt.Sprint(port)) }

// prepareDir makes dir absolute, because servers chdir or resolve paths against their own working
// directory, and creates it so that the local stack can pass a directory that does not exist yet.
func prepareDir(dir string) (string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	return abs, os.MkdirAll(abs, 0o755)
}

// inParallel runs f(0) … f(n-1) at once and returns every error they gave, joined: servers of a
// cluster start and stop together rather than one after another.
func inParallel(n int, f func(i int) error) error {
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { errs[i] = f(i) })
	}
	wg.Wait()
	return errors.Join(errs...)
}
