package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/heraldpush/herald/pkg/httpapi"
)

// stoppable is a private server the stack can take down and bring back on the same address, so that a
// fault run (tools/chaos) can cost Herald a dependency the way a crash or a maintenance window would.
type stoppable interface {
	Stop() error
	Restart(ctx context.Context) error
}

// control serves the stack's own loopback control API: POST /servers/{name}/stop and
// /servers/{name}/start for redis, mysql, zookeeper and kafka. Services are faulted with signals
// instead (their pids are in stack.json), and the supervisor restarts them.
func control(logger *slog.Logger, in infra, changed func()) http.Handler {
	servers := map[string]stoppable{"redis": in.redis, "mysql": in.mysql, "zookeeper": in.zk, "kafka": in.kafka}
	act := func(stop bool) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			name := r.PathValue("name")
			s, ok := servers[name]
			if !ok {
				httpapi.WriteError(w, httpapi.Errorf(httpapi.CodeNotFound, "no server %q: want redis, mysql, zookeeper or kafka", name))
				return
			}
			var err error
			if stop {
				err = s.Stop()
			} else {
				ctx, cancel := context.WithTimeout(r.Context(), 2*time.Minute)
				defer cancel()
				err = s.Restart(ctx)
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
	return mux
}

// serveControl serves h on addr until ctx ends.
func serveControl(ctx context.Context, logger *slog.Logger, addr string, h http.Handler) error {
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
