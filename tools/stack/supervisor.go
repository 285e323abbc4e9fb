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
// logs/<name>.log, and stops them with SIGTERM, the way an orchestrator would.
type supervisor struct {
	logger *slog.Logger
	bin    string
	logDir string
	out    io.Writer  // the terminal
	exited chan error // one value per child that exits on its own

	// mu guards procs.
	mu    sync.Mutex
	procs []*child
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
	name     string
	cmd      *exec.Cmd
	done     chan struct{}
	stopping bool
}

func newSupervisor(logger *slog.Logger, bin, logDir string, out io.Writer) *supervisor {
	return &supervisor{logger: logger, bin: bin, logDir: logDir, out: out, exited: make(chan error, 16)}
}

// start runs binary with env (HERALD_* settings) under name.
func (s *supervisor) start(name, binary string, env map[string]string) error {
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
	logFile, err := os.Create(filepath.Join(s.logDir, name+".log"))
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
	c := &child{name: name, cmd: cmd, done: make(chan struct{})}
	s.mu.Lock()
	s.procs = append(s.procs, c)
	s.mu.Unlock()
	go func() {
		copyLines(out, logFile, s.out, name)
		err := cmd.Wait()
		logFile.Close()
		close(c.done)
		s.mu.Lock()
		stopping := c.stopping
		s.mu.Unlock()
		switch {
		case stopping:
		case err == nil:
			// A clean exit is a decision (a drained push-server exits 0); the rest of the stack runs on.
			s.logger.Info("service exited", "service", name)
		default:
			s.exited <- fmt.Errorf("%s: %v (log: %s)", name, err, filepath.Join(s.logDir, name+".log"))
		}
	}()
	return nil
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
