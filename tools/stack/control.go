package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/heraldpush/herald/pkg/httpapi"
	"github.com/heraldpush/herald/pkg/testenv"
)

// stoppable is a private server the stack can take down and bring back on the same address, so that a
// fault run (tools/chaos) can cost Herald a dependency the way a crash or a maintenance window would.
type stoppable interface {
	Stop() error
	Restart(ctx context.Context) error
}

// control serves the stack's own loopback control API. POST /servers/{name}/stop and
// /servers/{name}/start take a private server down and bring it back: redis, mysql, zookeeper and
// kafka, or in the cluster-shaped stack each server on its own (redis-1 … redis-6, zookeeper-1 …
// zookeeper-3, mysql, kafka). GET /servers shows them all, with the current role of each Redis node
// (master or replica) and ZooKeeper server (leader or follower), and GET /redis/master?key=K names
// the Redis server that is master of K's slot now: what a fault tool needs to hit the server a
// given user's routes live on. Services are faulted with signals instead (their pids are in
// stack.json), and the supervisor restarts them.
func control(logger *slog.Logger, in infra, changed func()) http.Handler {
	list := in.servers()
	servers := map[string]namedServer{}
	var names []string
	for _, s := range list {
		servers[s.name] = s
		names = append(names, s.name)
	}
	want := strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
	act := func(stop bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			name := r.PathValue("name")
			s, ok := servers[name]
			if !ok {
				httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeNotFound, "no server %q: want %s", name, want))
				return
			}
			var err error
			if stop {
				err = s.srv.Stop()
			} else {
				ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
				defer cancel()
				err = s.srv.Restart(ctx)
			}
			if err != nil {
				logger.Error("control", "server", name, "stop", stop, "err", err)
				httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeInternal, "%s: %v", name, err))
				return
			}
			logger.Warn("control", "server", name, "running", !stop)
			changed()
			httpapi.WriteJSON(w, http.StatusOK, map[string]any{"server": name, "running": !stop})
		}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /servers/{name}/stop", act(true))
	mux.HandleFunc("POST /servers/{name}/start", act(false))
	mux.Handle("GET /servers", handleServers(list))
	mux.Handle("GET /redis/master", handleRedisMaster(in))
	return mux
}

// serverState is one server in GET /servers.
type serverState struct {
	Name    string `json:"name"`
	Addr    string `json:"addr"`          // Kafka's lists every broker, comma-separated
	PID     int    `json:"pid,omitempty"` // none for Kafka, which runs inside the stack
	Running bool   `json:"running"`
	// Role is master or replica for a Redis Cluster node, leader or follower for a server of a
	// ZooKeeper ensemble; empty for other servers and for one that is stopped or does not answer.
	Role string `json:"role,omitempty"`
}

func handleServers(list []namedServer) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		out := make([]serverState, 0, len(list))
		for _, s := range list {
			st := serverState{Name: s.name, Addr: s.addr, Running: s.running()}
			if s.pid != nil {
				st.PID = s.pid()
			}
			if st.Running && s.role != nil {
				ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
				st.Role, _ = s.role(ctx) // a server that does not answer has no role to show
				cancel()
			}
			out = append(out, st)
		}
		httpapi.WriteJSON(w, http.StatusOK, map[string]any{"servers": out})
	})
}

// redisMaster is the answer of GET /redis/master.
type redisMaster struct {
	Key  string `json:"key"`
	Name string `json:"name"` // as in GET /servers
	Addr string `json:"addr"`
	// Slot is the key's hash slot; absent without a cluster, where one server holds every key.
	Slot *int `json:"slot,omitempty"`
}

func handleRedisMaster(in infra) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		key := r.URL.Query().Get("key")
		if key == "" {
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeInvalidRequest, "key is required: GET /redis/master?key=herald:route:{uid}"))
			return
		}
		if in.redisCluster == nil {
			httpapi.WriteJSON(w, http.StatusOK, redisMaster{Key: key, Name: "redis", Addr: in.redis.Addr})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		slot := testenv.KeySlot(key)
		m, err := in.redisCluster.MasterOfSlot(ctx, slot)
		if err != nil {
			httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeUnavailable, "%v", err))
			return
		}
		httpapi.WriteJSON(w, http.StatusOK, redisMaster{Key: key, Name: in.redisName(m.Addr), Addr: m.Addr, Slot: &slot})
	})
}

// serveHTTP serves h on addr until ctx ends (the control API, the demo app).
func serveHTTP(ctx context.Context, logger *slog.Logger, addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	go func() {
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			logger.Error("control listener", "err", err)
		}
	}()
	return nil
}
