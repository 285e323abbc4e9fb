package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// supervisor runs the services as child processes, copies their logs to the terminal and to
// logs/<name>.log, and stops them with SIGTERM, the way an orchestrator would. A service that dies once
// the stack is up is reported and, unless restartDelay is 0, started again after restartDelay, so one
// can try a failure (kill -9 of a push-server, say) and watch the rest of the stack live through it.
type supervisor struct {
	logger       *slog.Logger
	bin          string
	logDir       string
	out          io.Writer  // the terminal
	exited       chan error // while starting: one value per child that exits on its own
	restartDelay time.Duration
	onRestart    func() // after a restarted child is running (the stack rewrites stack.json's pids)

	// mu guards procs and up.
	mu    sync.Mutex
	procs []*child
	up    bool // every service was ready once: deaths are restarted, not fatal
}

// pids returns every running child's process id by name.
func (s *supervisor) pids() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[string]int, len(s.procs))
	for _, c := range s.procs {
		if c.cmd.Process != nil {
			out[c.name] = c.cmd.Process.Pid
		}
	}
	return out
}

type child struct {
	name, binary string
	env          map[string]string
	cmd          *exec.Cmd
	done         chan struct{}
	stopping     bool
}

func newSupervisor(logger *slog.Logger, bin, logDir string, out io.Writer, restartDelay time.Duration, onRestart func()) *supervisor {
	return &supervisor{logger: logger, bin: bin, logDir: logDir, out: out, exited: make(chan error, 16), restartDelay: restartDelay, onRestart: onRestart}
}

// running marks the stack as up: from now on a service that dies is restarted instead of failing the
// start.
func (s *supervisor) running() {
	s.mu.Lock()
	s.up = true
	s.mu.Unlock()
}

// start runs binary with env (HERALD_* settings) under name.
func (s *supervisor) start(name, binary string, env map[string]string) error {
	return s.spawn(name, binary, env, os.O_TRUNC)
}

// spawn starts the child; logMode is os.O_TRUNC for a fresh log, os.O_APPEND after a restart.
func (s *supervisor) spawn(name, binary string, env map[string]string, logMode int) error {
	path, err := filepath.Abs(filepath.Join(s.bin, binary))
	if err != nil {
		return err
	}
	if _, err := os.Stat(path); err != nil {
		return fmt.Errorf("%s: binary missing (make run builds it): %w", name, err)
	}
	if err := os.MkdirAll(s.logDir, 0o755); err != nil {
		return err
	}
	logFile, err := os.OpenFile(filepath.Join(s.logDir, name+".log"), os.O_CREATE|os.O_WRONLY|logMode, 0o644)
	if err != nil {
		return err
	}
	cmd := exec.Command(path)
	cmd.Env = os.Environ()
	for k, v := range env {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	// Own process group: Ctrl-C in the terminal reaches only the stack, which then stops the children
	// in order. Pdeathsig: if the stack is killed, so are they.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return err
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		logFile.Close()
		return fmt.Errorf("%s: %w", name, err)
	}
	c := &child{name: name, binary: binary, env: env, cmd: cmd, done: make(chan struct{})}
	s.mu.Lock()
	replaced := false
	for i, old := range s.procs {
		if old.name == name {
			s.procs[i], replaced = c, true // a restart keeps the service's place in the stop order
		}
	}
	if !replaced {
		s.procs = append(s.procs, c)
	}
	s.mu.Unlock()
	go func() {
		copyLines(out, logFile, s.out, name)
		err := cmd.Wait()
		logFile.Close()
		close(c.done)
		s.mu.Lock()
		stopping, up := c.stopping, s.up
		s.mu.Unlock()
		switch {
		case stopping:
		case err == nil:
			// A clean exit is a decision (a drained push-server exits 0); the rest of the stack runs on.
			s.logger.Info("service exited", "service", name)
		case !up:
			s.exited <- fmt.Errorf("%s: %v (log: %s)", name, err, filepath.Join(s.logDir, name+".log"))
		case s.restartDelay <= 0:
			s.logger.Error("service died; the rest of the stack runs on (restarts are off)", "service", name, "err", err)
		default:
			s.logger.Error("service died; restarting it", "service", name, "err", err, "in", s.restartDelay)
			go s.restart(c)
		}
	}()
	return nil
}

// restart starts a dead child again after the delay, unless the stack is stopping meanwhile.
func (s *supervisor) restart(c *child) {
	time.Sleep(s.restartDelay)
	s.mu.Lock()
	stopping := c.stopping
	s.mu.Unlock()
	if stopping {
		return
	}
	if err := s.spawn(c.name, c.binary, c.env, os.O_APPEND); err != nil {
		s.logger.Error("restart failed", "service", c.name, "err", err)
		return
	}
	s.logger.Info("service restarted", "service", c.name)
	if s.onRestart != nil {
		s.onRestart()
	}
}

// copyLines writes each line of a child's output to its log file and, prefixed, to the terminal.
func copyLines(r io.Reader, logFile, terminal io.Writer, name string) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		fmt.Fprintf(logFile, "%s\n", sc.Bytes())
		fmt.Fprintf(terminal, "%-14s %s\n", "["+name+"]", sc.Bytes())
	}
}

// waitReady polls url until it answers 200, the child exits, or ctx ends.
func (s *supervisor) waitReady(ctx context.Context, name, url string) error {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	for {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s not ready at %s: %w", name, url, ctx.Err())
		case err := <-s.exited:
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// stopAll sends SIGTERM to every child, newest first, and waits up to timeout for each before killing it.
func (s *supervisor) stopAll(timeout time.Duration) {
	s.mu.Lock()
	procs := s.procs
	for _, c := range procs {
		c.stopping = true
	}
	s.mu.Unlock()
	for i := len(procs) - 1; i >= 0; i-- {
		c := procs[i]
		_ = c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(timeout):
			s.logger.Warn("service did not stop in time; killing it", "service", c.name)
			_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
			<-c.done
		}
	}
}
