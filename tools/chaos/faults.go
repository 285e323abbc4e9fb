package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
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
	// cluster faults need the cluster-shaped stack (make run-cluster); their names start with cluster-.
	cluster bool
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
		{name: "cluster-redis-master-down", cluster: true, what: "the Redis Cluster master of a third of the slots stopped; its replica takes over; after 30 s the old master starts again and rejoins as a replica", hold: 30 * time.Second, inject: stopRedisMaster},
		{name: "cluster-zookeeper-leader-down", cluster: true, what: "the leader of the ZooKeeper ensemble stopped for 15 s (the other two elect a new one)", hold: 15 * time.Second, inject: stopZooKeeperLeader},
		{name: "cluster-kill-push-route", cluster: true, what: "kill -9 of push-route-1 (the instance the pushes go to; the stack restarts it)", inject: kill("push-route-1")},
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
	return s.call(ctx, http.MethodPost, "/servers/"+name+"/"+action, nil)
}

// probeKey is a route key whose master stopRedisMaster stops: a third of the slots, any third.
const probeKey = "herald:route:{chaos-probe}"

// stopRedisMaster stops the master of probeKey's slot and records, as events, when a replica took
// over its slots. Healing starts the old master again, which rejoins as a replica.
func stopRedisMaster(ctx context.Context, s *stackInfo) (func(context.Context) error, error) {
	var before redisMaster
	if err := s.get(ctx, "/redis/master?key="+url.QueryEscape(probeKey), &before); err != nil {
		return nil, err
	}
	if err := s.control(ctx, before.Name, "stop"); err != nil {
		return nil, err
	}
	stopped := time.Now()
	s.event("stopped %s (%s), master of slot %d and a third of the slots", before.Name, before.Addr, before.slot())
	go func() {
		for time.Since(stopped) < 2*time.Minute {
			var now redisMaster
			if err := s.get(ctx, "/redis/master?key="+url.QueryEscape(probeKey), &now); err == nil && now.Name != before.Name {
				s.event("%s (%s) promoted to master of those slots %.1f s after the master stopped", now.Name, now.Addr, time.Since(stopped).Seconds())
				return
			}
			if !sleep(ctx, 100*time.Millisecond) {
				return
			}
		}
		s.event("no replica promoted within 2 minutes")
	}()
	return func(ctx context.Context) error { return s.control(ctx, before.Name, "start") }, nil
}

// stopZooKeeperLeader stops the ensemble's leader; healing starts it again.
func stopZooKeeperLeader(ctx context.Context, s *stackInfo) (func(context.Context) error, error) {
	var list struct {
		Servers []struct {
			Name string `json:"name"`
			Role string `json:"role"`
		} `json:"servers"`
	}
	if err := s.get(ctx, "/servers", &list); err != nil {
		return nil, err
	}
	for _, srv := range list.Servers {
		if strings.HasPrefix(srv.Name, "zookeeper") && srv.Role == "leader" {
			if err := s.control(ctx, srv.Name, "stop"); err != nil {
				return nil, err
			}
			s.event("stopped %s, the ensemble's leader", srv.Name)
			return func(ctx context.Context) error { return s.control(ctx, srv.Name, "start") }, nil
		}
	}
	return nil, fmt.Errorf("no ZooKeeper server says it leads (GET /servers)")
}

// redisMaster is the control API's answer to GET /redis/master.
type redisMaster struct {
	Name string `json:"name"`
	Addr string `json:"addr"`
	Slot *int   `json:"slot"`
}

func (m redisMaster) slot() int {
	if m.Slot == nil {
		return -1
	}
	return *m.Slot
}

// get reads one of the stack's control API answers into out.
func (s *stackInfo) get(ctx context.Context, path string, out any) error {
	return s.call(ctx, http.MethodGet, path, out)
}

// call makes one request of the stack's control API and decodes its answer into out (unless nil).
func (s *stackInfo) call(ctx context.Context, method, path string, out any) error {
	if s.ControlURL == "" {
		return fmt.Errorf("stack.json has no control_url: start the stack with this checkout's make run")
	}
	req, err := http.NewRequestWithContext(ctx, method, s.ControlURL+path, nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %w", method, path, apiclient.ReadError(resp))
	}
	if out == nil {
		return nil
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
