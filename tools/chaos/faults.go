package main

import (
	"context"
	"fmt"
	"net/http"
	"syscall"
	"time"

	"github.com/heraldpush/herald/pkg/apiclient"
)

// A fault is one failure injected into a running stack: inject does it, and heal (when not nil)
// undoes it after hold. Services killed with -9 are brought back by the stack's supervisor, as a
// process manager would in production, so those faults have no heal of their own.
type fault struct {
	name string
	what string
	hold time.Duration
	// inject starts the fault and returns what undoes it (nil: nothing to undo).
	inject func(ctx context.Context, s *stackInfo) (heal func(context.Context) error, err error)
}

func faults() []fault {
	return []fault{
		{name: "none", what: "no fault: the baseline"},
		{name: "kill-push-server", what: "kill -9 of ps-1 (the stack restarts it after its -restart-delay)", inject: kill("ps-1")},
		{name: "kill-push-route", what: "kill -9 of push-route", inject: kill("push-route")},
		{name: "kill-auth", what: "kill -9 of auth", inject: kill("auth")},
		{name: "freeze-push-server", what: "ps-1 stopped with SIGSTOP for 15 s, then SIGCONT", hold: 15 * time.Second, inject: freeze("ps-1")},
		{name: "freeze-push-server-long", what: "ps-1 stopped with SIGSTOP for 40 s: its ZooKeeper session expires and push-route sweeps its routes", hold: 40 * time.Second, inject: freeze("ps-1")},
		{name: "redis-down", what: "Redis stopped for 10 s and started again empty", hold: 10 * time.Second, inject: stopServer("redis")},
		{name: "mysql-down", what: "MariaDB stopped for 10 s and started again", hold: 10 * time.Second, inject: stopServer("mysql")},
		{name: "mysql-frozen", what: "MariaDB stopped with SIGSTOP for 10 s (connections hang, nothing is refused)", hold: 10 * time.Second, inject: freeze("mariadbd")},
		{name: "zookeeper-frozen", what: "ZooKeeper stopped with SIGSTOP for 15 s (sessions expire meanwhile)", hold: 15 * time.Second, inject: freeze("zookeeper")},
		{name: "kafka-down", what: "the Kafka-protocol broker stopped for 10 s and started again", hold: 10 * time.Second, inject: stopServer("kafka")},
	}
}

func findFault(name string) (fault, error) {
	for _, f := range faults() {
		if f.name == name {
			return f, nil
		}
	}
	return fault{}, fmt.Errorf("no fault %q (see -list)", name)
}

func kill(proc string) func(context.Context, *stackInfo) (func(context.Context) error, error) {
	return func(_ context.Context, s *stackInfo) (func(context.Context) error, error) {
		pid, err := s.pid(proc)
		if err != nil {
			return nil, err
		}
		return nil, syscall.Kill(pid, syscall.SIGKILL)
	}
}

func freeze(proc string) func(context.Context, *stackInfo) (func(context.Context) error, error) {
	return func(_ context.Context, s *stackInfo) (func(context.Context) error, error) {
		pid, err := s.pid(proc)
		if err != nil {
			return nil, err
		}
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			return nil, err
		}
		return func(context.Context) error { return syscall.Kill(pid, syscall.SIGCONT) }, nil
	}
}

func stopServer(name string) func(context.Context, *stackInfo) (func(context.Context) error, error) {
	return func(ctx context.Context, s *stackInfo) (func(context.Context) error, error) {
		if err := s.control(ctx, name, "stop"); err != nil {
			return nil, err
		}
		return func(ctx context.Context) error { return s.control(ctx, name, "start") }, nil
	}
}

// control asks the stack to stop or start one of its servers.
func (s *stackInfo) control(ctx context.Context, name, action string) error {
	if s.ControlURL == "" {
		return fmt.Errorf("stack.json has no control_url: start the stack with this checkout's make run")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.ControlURL+"/servers/"+name+"/"+action, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %w", action, name, apiclient.ReadError(resp))
	}
	return nil
}
