package testenv

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
)

// Redis is a private redis-server without persistence: Restart starts it empty.
type Redis struct {
	Addr string // 127.0.0.1:port

	srv server
}

// StartRedis starts redis-server on a free loopback port with dir as its working directory and
// redis.log there. ctx bounds only the start; the server runs until Stop.
func StartRedis(ctx context.Context, dir string) (*Redis, error) {
	bin, err := findProgram("redis-server", "redis-server")
	if err != nil {
		return nil, err
	}
	if dir, err = prepareDir(dir); err != nil {
		return nil, err
	}
	r := &Redis{}
	r.srv.start = func(ctx context.Context, port int) (*process, error) {
		c := redisCommand(bin, dir, port)
		return launch(ctx, c, func(ctx context.Context, p *process) error {
			return pingRedis(ctx, loopback(port), p.pid())
		})
	}
	if err := r.srv.startFirst(ctx); err != nil {
		return nil, err
	}
	r.Addr = loopback(r.srv.port)
	return r, nil
}

// redisCommand runs redis-server on port without persistence, in the foreground, with dir as its
// working directory and redis.log there; extra adds settings.
func redisCommand(bin, dir string, port int, extra ...string) command {
	args := []string{
		"--port", strconv.Itoa(port),
		"--bind", "127.0.0.1",
		"--save", "",
		"--appendonly", "no",
		"--dir", dir,
		"--daemonize", "no", // a daemonized server would escape Stop
	}
	return command{
		name: "redis-server",
		path: bin,
		args: append(args, extra...),
		dir:  dir,
		log:  filepath.Join(dir, "redis.log"),
	}
}

// pingRedis checks that the server answers PING and that it is our process, not another
// redis-server that got the port first.
func pingRedis(ctx context.Context, addr string, pid int) error {
	c := redis.NewClient(&redis.Options{
		Addr:            addr,
		Protocol:        2, // skips the HELLO negotiation, this is only a probe
		DisableIdentity: true,
		MaxRetries:      -1,
		PoolSize:        1,
	})
	defer c.Close()
	if err := c.Ping(ctx).Err(); err != nil {
		return err
	}
	info, err := c.Info(ctx, "server").Result()
	if err != nil {
		return err
	}
	if !strings.Contains(info, fmt.Sprintf("\nprocess_id:%d\r", pid)) {
		return fmt.Errorf("redis at %s: %w", addr, errNotOurs)
	}
	return nil
}

// Stop shuts the server down and waits for its process to exit. It may be called more than once.
func (r *Redis) Stop() error { return r.srv.stop() }

// Restart stops the server if it runs and starts it again on the same port and directory.
func (r *Redis) Restart(ctx context.Context) error { return r.srv.restart(ctx) }

// NewRedis starts a Redis in a temporary directory for the test and stops it when the test ends.
func NewRedis(t testing.TB) *Redis {
	t.Helper()
	r, err := StartRedis(context.Background(), t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Stop(); err != nil {
			t.Error(err)
		}
	})
	return r
}

// PID is the server's process id (0 while stopped), for tools that measure what it costs.
func (x *Redis) PID() int { return x.srv.pid() }
