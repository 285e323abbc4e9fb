package routes

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClientOptions says how a service reaches the Redis that holds the routes.
type ClientOptions struct {
	// Addrs are the server's address, or on a cluster any of its nodes (more than one, so a client
	// can start while one is down).
	Addrs []string
	// Cluster is set for Redis Cluster. It is never guessed from the number of addresses: one
	// address of a cluster must not silently become a plain client, nor a typo'd second address a
	// cluster client (CheckMode tells the two apart on a live server).
	Cluster bool
	// Tune adjusts the rest (timeouts, pool and buffer sizes) for the service's load.
	Tune func(*redis.UniversalOptions)
}

// slotsRefresh is how old a cluster client's slot layout may get before it is read again, as a
// backstop: the Store also asks for a reload whenever a server fails a command, which is what makes
// a failover cost about the promotion time rather than go-redis's default of a minute.
const slotsRefresh = 5 * time.Second

// NewClient returns a client for o: a cluster client when o.Cluster is set, else a single-server one.
func NewClient(o ClientOptions) (redis.UniversalClient, error) {
	blank := func(a string) bool { return strings.TrimSpace(a) == "" }
	if len(o.Addrs) == 0 || slices.ContainsFunc(o.Addrs, blank) {
		return nil, fmt.Errorf("redis: %w: empty address in %q", ErrInvalid, strings.Join(o.Addrs, ","))
	}
	if !o.Cluster && len(o.Addrs) > 1 {
		return nil, fmt.Errorf("redis: %d addresses given without cluster mode: list several addresses only for Redis Cluster, and set -redis-cluster (HERALD_REDIS_CLUSTER=true)", len(o.Addrs))
	}
	// One dial per attempt, not go-redis's five with back-off: a dead master refuses at once, and
	// retrying it held every lookup pipeline, healthy masters' uids included, for seconds.
	opts := &redis.UniversalOptions{Addrs: o.Addrs, DialerRetries: 1}
	if o.Tune != nil {
		o.Tune(opts)
	}
	if !o.Cluster {
		return redis.NewClient(opts.Simple()), nil
	}
	co := opts.Cluster()
	co.ClusterStateReloadInterval = slotsRefresh
	return redis.NewClusterClient(co), nil
}

// ErrMisconfigured is wrapped by CheckMode's error when the server's mode is not the client's: a
// cluster node reached by a single-server client, or a plain server by a cluster client. Every
// command on a cluster's slots owned by other nodes would fail with MOVED.
var ErrMisconfigured = errors.New("redis misconfigured")

// CheckMode tells whether the server is in the mode the Store's client expects. It needs one round
// trip; a server that cannot be reached answers its error, not ErrMisconfigured.
func (s *Store) CheckMode(ctx context.Context) error {
	if s.cluster != nil {
		// A cluster client starts by reading the slot layout, which a plain server refuses.
		err := s.cluster.ClusterSlots(ctx).Err()
		if err != nil && strings.Contains(err.Error(), "cluster support disabled") {
			return fmt.Errorf("%w: -redis-cluster is set, but the Redis server is not a cluster node: unset -redis-cluster, or point -redis-addr at the cluster (%v)", ErrMisconfigured, err)
		}
		if err != nil {
			return fmt.Errorf("check redis mode: %w", err)
		}
		return nil
	}
	info, err := s.rdb.Info(ctx, "cluster").Result()
	if err != nil {
		return fmt.Errorf("check redis mode: %w", err)
	}
	if strings.Contains(info, "cluster_enabled:1") {
		return fmt.Errorf("%w: the Redis server is a Redis Cluster node, but the client is not in cluster mode: set -redis-cluster (HERALD_REDIS_CLUSTER=true) and list the cluster's nodes in -redis-addr", ErrMisconfigured)
	}
	return nil
}

// Servers answers each master's PING, keyed by address: one entry for a single server. A cluster's
// slot layout is read again first, so a promoted replica shows up as soon as the cluster knows it.
func (s *Store) Servers(ctx context.Context) map[string]error {
	if s.cluster == nil {
		return map[string]error{s.rdb.(*redis.Client).Options().Addr: s.rdb.Ping(ctx).Err()}
	}
	out := make(map[string]error)
	var mu sync.Mutex
	err := s.cluster.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error {
		err := c.Ping(ctx).Err()
		mu.Lock()
		out[c.Options().Addr] = err
		mu.Unlock()
		return nil
	})
	if err != nil && len(out) == 0 {
		// Not even the layout could be read: every seed address failed.
		out[strings.Join(s.seeds(), ",")] = err
	}
	return out
}

func (s *Store) seeds() []string {
	if s.cluster == nil {
		return []string{s.rdb.(*redis.Client).Options().Addr}
	}
	return s.cluster.Options().Addrs
}

// ServersOf names the servers that Register(r) writes to, by address: the masters of the route's slot
// and of its index shard's slot on a cluster (as the client last read the layout), the server itself
// otherwise. A push-server refuses a connect whose servers are failing, and only those.
func (s *Store) ServersOf(ctx context.Context, r Route) []string {
	if s.cluster == nil {
		return s.seeds()
	}
	var out []string
	for _, key := range []string{routeKey(r.UID), indexKeyOf(r.Node, r.UID)} {
		c, err := s.cluster.MasterForKey(ctx, key)
		if err != nil {
			continue
		}
		if addr := c.Options().Addr; len(out) == 0 || out[0] != addr {
			out = append(out, addr)
		}
	}
	return out
}

// failed is called with the error of every command the Store runs. A cluster client keeps sending a
// dead master's slots to its address until it reads the layout again, which by default it does once
// a minute; after a network error (as opposed to Redis refusing a command) it is asked to read it now.
// go-redis coalesces these requests, so a burst of failures costs one CLUSTER SLOTS.
func (s *Store) failed(err error) {
	if err == nil || s.cluster == nil {
		return
	}
	var refused redis.Error
	if errors.As(err, &refused) && !isMoved(err) {
		return
	}
	s.cluster.ReloadState(context.Background())
}

func isMoved(err error) bool {
	return redis.HasErrorPrefix(err, "MOVED") || redis.HasErrorPrefix(err, "ASK") || redis.HasErrorPrefix(err, "CLUSTERDOWN") || redis.HasErrorPrefix(err, "TRYAGAIN")
}

// CheckStartup refuses to start a service against a Redis in the wrong mode (CheckMode), which would
// otherwise pass as ready and fail every command on other nodes' slots. A Redis that cannot be reached
// yet does not stop the start: services come up before their dependencies and say so in /readyz.
func CheckStartup(ctx context.Context, s *Store, logger *slog.Logger) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	err := s.CheckMode(ctx)
	if errors.Is(err, ErrMisconfigured) {
		return err
	}
	if err != nil {
		logger.Warn("redis not reachable at start; /readyz says so until it is", "err", err)
	}
	return nil
}
