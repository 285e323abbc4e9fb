package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/heraldpush/herald/pkg/discovery"
	"github.com/heraldpush/herald/pkg/health"
	"github.com/heraldpush/herald/pkg/routes"
	"github.com/heraldpush/herald/pkg/token"
	"github.com/heraldpush/herald/pkg/wire"
	"github.com/heraldpush/herald/services/push-server/internal/hub"
	"github.com/heraldpush/herald/services/push-server/internal/rooms"
	"github.com/heraldpush/herald/services/push-server/internal/upstream"
	"github.com/heraldpush/herald/services/push-server/internal/wsconn"
)

// server is one push-server node: its connections and what it does with their frames.
type server struct {
	cfg      Config
	logger   *slog.Logger
	verifier *token.Verifier
	hub      *hub.Hub
	rooms    *rooms.Table
	fanout   *rooms.Fanout
	engine   *wsconn.Engine
	routes   *routeKeeper
	metrics  *metrics
	acks     *ackForwarder // devices' acks, on their way to push-route
	replays  *replayer     // pending messages for new connections
	producer *upstream.Producer
	// roomRegistry is where the node records how many members of each room it holds; roomsStale
	// asks for all of it to be written again.
	roomRegistry roomRegistry
	roomsStale   atomic.Bool
	roomsDue     chan struct{} // roomsLost's wake-up for the room sync

	// seq numbers connections; it starts at the start time in nanoseconds so conn ids stay unique
	// across restarts of a node with the same id.
	seq      atomic.Uint64
	pending  atomic.Int64 // upgrades in progress, counted against MaxConns
	draining atomic.Bool

	pong []byte // the pong frame's JSON, encoded once

	// sessions are the SSE and long-poll connections, found by /send and /poll.
	sessions sessionTable
	// roomClaims holds the rooms claim of each connection whose token has one (*wsconn.Conn →
	// []string); a connection without it pays nothing for rooms.
	roomClaims sync.Map

	// ready are the readiness checks, answered on both listeners; run sets them before serving.
	ready []health.Check
	// registration is the node's znode once announced (nil before), which drain and undrain update.
	registration atomic.Pointer[discovery.Registration]

	// streams ends with endStreams, when the node stops serving: deliver streams waiting for their
	// next batch then end, and the internal listener can shut down.
	streams    context.Context
	endStreams context.CancelFunc
}

// serverDeps are what a node is built from; run makes them from the real servers.
type serverDeps struct {
	routes    *routes.Store
	verifier  *token.Verifier
	pushRoute interface { // push-route's internal API (apiclient.RouteClient)
		ackSink
		pendingSource
	}
	producer *upstream.Producer
	registry prometheus.Registerer
}

// newServer builds a node. Its background work starts with run; its connections are served from the
// listener handed to acceptWS.
func newServer(cfg Config, logger *slog.Logger, deps serverDeps) (*server, error) {
	m := newMetrics(deps.registry)
	s := &server{
		cfg:          cfg,
		logger:       logger,
		verifier:     deps.verifier,
		hub:          hub.New(cfg.MaxConnsPerUser),
		rooms:        rooms.New(cfg.MaxRoomsPerConn),
		roomsDue:     make(chan struct{}, 1),
		roomRegistry: deps.routes,
		metrics:      m,
		producer:     deps.producer,
	}
	s.fanout = rooms.NewFanout(s.rooms, cfg.RoomWindow, func(frames, writes int) {
		m.roomFrames.Add(float64(frames))
		m.roomWrites.Add(float64(writes))
	})
	s.streams, s.endStreams = context.WithCancel(context.Background())
	s.seq.Store(uint64(time.Now().UnixNano()))
	s.pong, _ = json.Marshal(map[string]string{"type": wire.TypePong})
	s.routes = newRouteKeeper(deps.routes, cfg.NodeID, logger, m, routeHooks{
		local: s.localRoutes, replay: s.replayRoutes, recorded: s.roomsLost,
	})
	s.acks = newAckForwarder(deps.pushRoute, logger, m, defaultAckOptions())
	s.replays = newReplayer(deps.pushRoute, logger, m, s.draining.Load)
	engine, err := wsconn.NewEngine(wsconn.Config{Pollers: cfg.Pollers, Workers: cfg.Workers, MaxMessage: cfg.MaxFrame}, s)
	if err != nil {
		return nil, err
	}
	s.engine = engine
	m.registerGauges(deps.registry, gauges{
		connections:    func() int { c, _ := s.hub.Count(); return c },
		users:          func() int { _, u := s.hub.Count(); return u },
		acksBuffered:   s.acks.buffered,
		replaysWaiting: s.replays.waiting,
		maxConns:       cfg.MaxConns,
	})
	return s, nil
}

// run does the node's background work until ctx ends: route upkeep, the idle sweep, forwarding acks
// and replaying pending messages.
func (s *server) run(ctx context.Context) {
	var wg sync.WaitGroup
	wg.Go(func() { s.routes.run(ctx, 4) })
	wg.Go(func() { s.sweepIdle(ctx.Done()) })
	wg.Go(func() { s.acks.run(ctx) })
	wg.Go(func() { s.replays.run(ctx) })
	wg.Go(func() { s.fanout.Run(ctx) })
	wg.Go(func() { s.syncRooms(ctx) })
	wg.Wait()
}

// localRoutes lists the routes of every local connection, for re-recording them in Redis.
// replayRoutes replays the pending messages of the connections rs name, as at their connect.
func (s *server) replayRoutes(rs []routes.Route) {
	want := make(map[string]bool, len(rs))
	for _, r := range rs {
		want[r.ConnID] = true
	}
	var mu sync.Mutex
	var conns []*wsconn.Conn
	s.hub.Each(2, func(c *wsconn.Conn) {
		if want[s.connID(c)] {
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	})
	s.logger.Info("replaying stored messages to connections whose routes were recorded again", "connections", len(conns))
	for _, c := range conns {
		s.replays.enqueue(c)
	}
}

func (s *server) localRoutes() []routes.Route {
	var mu sync.Mutex
	var rs []routes.Route
	s.hub.Each(2, func(c *wsconn.Conn) {
		r := s.routeOf(c)
		mu.Lock()
		rs = append(rs, r)
		mu.Unlock()
	})
	return rs
}
