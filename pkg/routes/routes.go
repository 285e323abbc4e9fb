// Package routes is Herald's route directory in Redis: which push-server node holds which connections
// of a uid. Push-servers record and remove their own connections; push-route reads the routes of all
// uids of a push in one round trip, drops routes a node no longer knows, and sweeps the routes of a node
// that died.
//
// A uid's routes are one hash, herald:route:{<uid>}, field conn_id → "node-id|device|connected_at_ms"
// (a public contract: operators' tools read it). Each node also keeps an index of its uids, split into
// sets herald:node:{<node-id>:<k>}:uids (k < 16, by a hash of the uid) so that on Redis Cluster it
// spreads over the masters, and so a dead node's routes can be found without scanning Redis. A route
// and its index entry live on different hash slots, so they are updated by separate commands and the
// index is allowed to name a uid it no longer needs (a sweep then finds nothing for it), never the other
// way round: a route whose index entry could not be written is removed again (see Register and
// dropFromIndex).
//
// On Redis Cluster, a master that fails costs only the operations on its slots: lookups of the other
// uids still answer (LookupFrom reports the failed ones), and every network failure makes the client
// read the slot layout again, so a promoted replica takes over as soon as the cluster says so.
package routes

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

// Route is one connection of a uid on a push-server node.
type Route struct {
	UID    string
	ConnID string
	Node   string
	Device string
	// ConnectedAt is stored in unix milliseconds; finer precision is lost.
	ConnectedAt time.Time
}

// ErrInvalid is wrapped by every error about malformed arguments, as opposed to Redis failing.
var ErrInvalid = errors.New("invalid argument")

// Batch sizes bound how much one pipeline sends and Redis buffers, while keeping round trips few.
const (
	registerBatch = 500
	sweepBatch    = 500
	scanBatch     = 1000
)

// Store reads and writes routes in Redis. It is safe for concurrent use.
type Store struct {
	rdb       redis.UniversalClient
	cluster   *redis.ClusterClient // rdb, when it is a cluster client
	malformed atomic.Int64
}

// NewStore returns a Store over rdb, which may be a single server, a failover or a cluster client
// (NewClient makes one of the right kind).
func NewStore(rdb redis.UniversalClient) *Store {
	cc, _ := rdb.(*redis.ClusterClient)
	return &Store{rdb: rdb, cluster: cc}
}

// Malformed returns how many route values Lookup has skipped because they did not follow the
// "node-id|device|connected_at_ms" contract, since the Store was made.
func (s *Store) Malformed() int64 { return s.malformed.Load() }

// Register records r: its field in the uid's route hash and the uid in the node's index, in one round
// trip. Recording the same route again is harmless. It also reports whether the user may have pending
// offline messages (the marker MarkPending sets), so that a connect with nothing pending asks for none.
//
// On a cluster the two writes go to two masters. When the index write fails and the route write did
// not, the route is removed again before the error is returned: a route missing from its node's index
// would outlive the node, since no sweep could find it.
func (s *Store) Register(ctx context.Context, r Route) (pending bool, err error) {
	if err := validRoute(r); err != nil {
		return false, fmt.Errorf("register route: %w", err)
	}
	calls := []scriptCall{registerCall(r)}
	var index *redis.IntCmd
	err = s.runPipelined(ctx, calls, func(p redis.Pipeliner) {
		index = p.SAdd(ctx, indexKeyOf(r.Node, r.UID), r.UID)
	})
	if err != nil {
		// Also when the route's write failed too: a timeout does not say whether it was applied.
		if index.Err() != nil {
			undoCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
			undoErr := s.run(undoCtx, unregisterScript, []string{routeKey(r.UID)}, r.Node, r.ConnID).Err()
			cancel()
			if undoErr != nil {
				err = errors.Join(err, fmt.Errorf("remove the route again: %w", undoErr))
			}
		}
		return false, fmt.Errorf("register route: %w", err)
	}
	res, err := calls[0].cmd.Int64Slice()
	if err != nil || len(res) != 2 {
		// Unreadable: say pending, which costs one lookup, never a missed replay.
		return true, nil
	}
	return res[1] == 1, nil
}

// RegisterAll records many routes, in one round trip per registerBatch routes: it is how a node records
// all its connections again after Redis lost them.
func (s *Store) RegisterAll(ctx context.Context, rs []Route) error {
	_, err := s.RegisterAllPending(ctx, rs)
	return err
}

// RegisterAllPending is RegisterAll that also returns the routes whose users have a pending marker:
// a node that records its routes again after they were lost (swept while it was cut off) replays
// those users' stored messages, which were pushed while nobody could see the connections.
func (s *Store) RegisterAllPending(ctx context.Context, rs []Route) (pending []Route, err error) {
	for i, r := range rs {
		if err := validRoute(r); err != nil {
			return nil, fmt.Errorf("register routes: route %d: %w", i, err)
		}
	}
	for batch := range slices.Chunk(rs, registerBatch) {
		// The index first, then the routes, a round trip each: a route is never written before its
		// index entry, so a failure halfway leaves no route a sweep cannot find.
		byKey := make(map[string][]any)
		for _, r := range batch {
			key := indexKeyOf(r.Node, r.UID)
			byKey[key] = append(byKey[key], r.UID)
		}
		pipe := s.rdb.Pipeline()
		for key, uids := range byKey {
			pipe.SAdd(ctx, key, uids...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			s.failed(err)
			return pending, fmt.Errorf("register routes: index: %w", err)
		}
		calls := make([]scriptCall, len(batch))
		for i, r := range batch {
			calls[i] = registerCall(r)
		}
		if err := s.runPipelined(ctx, calls, nil); err != nil {
			return pending, fmt.Errorf("register routes: %w", err)
		}
		for i, c := range calls {
			// Unreadable counts as pending, as in Register: one lookup, never a missed replay.
			if res, err := c.cmd.Int64Slice(); err != nil || len(res) != 2 || res[1] == 1 {
				pending = append(pending, batch[i])
			}
		}
	}
	return pending, nil
}

func registerCall(r Route) scriptCall {
	v := r.Node + "|" + r.Device + "|" + strconv.FormatInt(r.ConnectedAt.UnixMilli(), 10)
	return scriptCall{script: registerScript, keys: []string{routeKey(r.UID), pendingKey(r.UID)}, args: []any{r.ConnID, v}}
}

// Unregister removes r's field, but only while it still names r.Node: the conn_id may meanwhile belong
// to a route another node recorded. When r.Node has no other connection of the uid left, the uid leaves
// the node's index. It reports whether a field was removed.
func (s *Store) Unregister(ctx context.Context, r Route) (bool, error) {
	if err := validIDs(r.UID, r.Node); err != nil {
		return false, fmt.Errorf("unregister route: %w", err)
	}
	if r.ConnID == "" {
		return false, fmt.Errorf("unregister route: %w: empty conn id", ErrInvalid)
	}
	n, err := s.remove(ctx, r.UID, r.Node, []string{r.ConnID})
	if err != nil {
		return n > 0, fmt.Errorf("unregister route: %w", err)
	}
	return n > 0, nil
}

// RemoveStale removes the connections connIDs of uid that still name node, for when node answered that
// it does not hold them; it fixes node's index like Unregister and returns how many fields it removed.
func (s *Store) RemoveStale(ctx context.Context, uid, node string, connIDs []string) (int, error) {
	if err := validIDs(uid, node); err != nil {
		return 0, fmt.Errorf("remove stale routes: %w", err)
	}
	if len(connIDs) == 0 {
		return 0, nil
	}
	n, err := s.remove(ctx, uid, node, connIDs)
	if err != nil {
		return n, fmt.Errorf("remove stale routes: %w", err)
	}
	return n, nil
}

func (s *Store) remove(ctx context.Context, uid, node string, connIDs []string) (int, error) {
	args := make([]any, 0, 1+len(connIDs))
	args = append(args, node)
	for _, id := range connIDs {
		args = append(args, id)
	}
	res, err := s.run(ctx, unregisterScript, []string{routeKey(uid)}, args...).Int64Slice()
	if err != nil {
		return 0, err
	}
	if len(res) != 2 {
		return 0, fmt.Errorf("unregister script answered %d values, want 2", len(res))
	}
	removed, left := int(res[0]), res[1]
	// Also when nothing was removed: a retry after a failed index update converges this way.
	if left == 0 {
		if err := s.dropFromIndex(ctx, uid, node); err != nil {
			return removed, err
		}
	}
	return removed, nil
}

// dropFromIndex removes uid from node's index after node's last route of uid went. The route hash and
// the index sit on two slots, so nothing makes the two steps atomic: the node may register a new
// connection of uid in between, and its SADD may land before this SREM. So the route hash is read again
// after the SREM and the uid put back when node holds a connection of it. On one Redis server that
// closes the race, since Register's pipeline writes the route before the index; on a cluster the two go
// to different shards in parallel and a miss remains possible, which costs a route of a dead node that
// push-route removes at the first push that finds the node gone.
func (s *Store) dropFromIndex(ctx context.Context, uid, node string) error {
	key := indexKeyOf(node, uid)
	if err := s.rdb.SRem(ctx, key, uid).Err(); err != nil {
		s.failed(err)
		return err
	}
	n, err := s.run(ctx, countScript, []string{routeKey(uid)}, node).Int64()
	if err != nil {
		return err
	}
	if n > 0 {
		err := s.rdb.SAdd(ctx, key, uid).Err()
		s.failed(err)
		return err
	}
	return nil
}

// Lookup returns the routes of every uid in uids in one round trip, keyed by uid; uids without routes
// are absent. Each uid's routes are ordered by connection time. Values that break the contract are
// skipped and counted (see Malformed), so one bad field cannot fail a whole push. Any uid that cannot
// be read fails the whole Lookup.
func (s *Store) Lookup(ctx context.Context, uids []string) (map[string][]Route, error) {
	res, err := s.LookupFrom(ctx, uids, nil)
	if err == nil && len(res.Failed) > 0 {
		err = res.Err
	}
	if err != nil {
		return nil, err
	}
	return res.Routes, nil
}

// Found is what LookupFrom read.
type Found struct {
	// Routes holds the routes of each uid that has any.
	Routes map[string][]Route
	// Unsynced lists the nodes asked about that have not marked their routes recorded (MarkSynced),
	// or whose mark could not be read.
	Unsynced []string
	// Failed lists the uids whose routes could not be read (their master failing, say); Err is the
	// first such failure.
	Failed []string
	Err    error
}

// LookupFrom is Lookup for a push to users of nodes (the live push-servers): in the same round trip
// it reads each node's synced mark (MarkSynced) and reports the nodes without one. Until a node has
// marked its routes recorded, a user with no route may in fact be connected to it: Redis restarted
// empty, or a replica without the routes took over, and the node has not recorded them again yet.
//
// A uid whose routes cannot be read is reported in Failed, and the others are still answered: on a
// cluster one failing master costs only the uids of its slots. The error is set only when no uid could
// be read (or the arguments are invalid).
func (s *Store) LookupFrom(ctx context.Context, uids, nodes []string) (Found, error) {
	res := Found{Routes: make(map[string][]Route)}
	if len(uids) == 0 {
		return res, nil
	}
	asked := make([]string, 0, len(uids)) // asked[i] is the uid of reads[i]
	seen := make(map[string]struct{}, len(uids))
	for _, uid := range uids {
		if uid == "" {
			return Found{}, fmt.Errorf("lookup routes: %w: empty uid", ErrInvalid)
		}
		if _, dup := seen[uid]; dup {
			continue
		}
		seen[uid] = struct{}{}
		asked = append(asked, uid)
	}
	// Plain commands, not scripts: reading a hash and a mark needs no atomicity, and Redis spends a
	// fraction of a script call's CPU on each (commandstats: EXISTS 0.7 µs, EVALSHA of the same 7.6).
	marks := make([]*redis.IntCmd, len(nodes))
	reads := make([]*redis.MapStringStringCmd, len(asked))
	// Each command's own error is read below.
	_ = s.runPipelined(ctx, nil, func(p redis.Pipeliner) {
		for i, node := range nodes {
			marks[i] = p.Exists(ctx, syncedKey(node))
		}
		for i, uid := range asked {
			reads[i] = p.HGetAll(ctx, routeKey(uid))
		}
	})
	for i, node := range nodes {
		// A mark that cannot be read counts as missing: the node's users count as unsure, which costs
		// stored messages a retry, never a loss.
		if n, err := marks[i].Result(); err != nil || n == 0 {
			res.Unsynced = append(res.Unsynced, node)
		}
	}
	for i, read := range reads {
		uid := asked[i]
		kv, err := read.Result()
		if err != nil {
			res.Failed = append(res.Failed, uid)
			if res.Err == nil {
				res.Err = fmt.Errorf("lookup routes: %w", err)
			}
			continue
		}
		var rs []Route
		for connID, value := range kv {
			r, ok := parseRoute(uid, connID, value)
			if !ok {
				s.malformed.Add(1)
				continue
			}
			rs = append(rs, r)
		}
		if len(rs) == 0 {
			continue
		}
		slices.SortFunc(rs, func(a, b Route) int {
			return cmp.Or(a.ConnectedAt.Compare(b.ConnectedAt), cmp.Compare(a.ConnID, b.ConnID))
		})
		res.Routes[uid] = rs
	}
	if len(res.Failed) == len(asked) {
		return Found{}, res.Err
	}
	return res, nil
}

// MarkSynced records that every route of node is in Redis (mark_synced.lua); the node calls it
// after recording them all, at start and whenever Redis comes back or lost them.
func (s *Store) MarkSynced(ctx context.Context, node string) error {
	if err := s.run(ctx, markSynced, []string{syncedKey(node)}, time.Now().UnixMilli()).Err(); err != nil {
		return fmt.Errorf("mark routes of %s synced: %w", node, err)
	}
	return nil
}

// Synced reports whether node's synced mark is in Redis: false after Redis lost the node's routes.
func (s *Store) Synced(ctx context.Context, node string) (bool, error) {
	n, err := s.rdb.Exists(ctx, syncedKey(node)).Result()
	s.failed(err)
	if err != nil {
		return false, fmt.Errorf("read synced mark of %s: %w", node, err)
	}
	return n == 1, nil
}

// parseRoute reads a "node-id|device|connected_at_ms" value.
func parseRoute(uid, connID, v string) (Route, bool) {
	node, rest, ok := strings.Cut(v, "|")
	if !ok || node == "" {
		return Route{}, false
	}
	device, ms, ok := strings.Cut(rest, "|")
	if !ok {
		return Route{}, false
	}
	at, err := strconv.ParseInt(ms, 10, 64)
	if err != nil {
		return Route{}, false
	}
	return Route{UID: uid, ConnID: connID, Node: node, Device: device, ConnectedAt: time.UnixMilli(at)}, true
}

// SweepNode removes every route of node, for when node has died, then its index, and returns how many
// fields it removed. It walks each index shard in batches, one round trip each. Running it again, or
// from several push-route instances at once, is safe: each field is removed, and counted, once. A node
// that registers routes while it is swept may lose them; a swept node is expected to be dead.
func (s *Store) SweepNode(ctx context.Context, node string) (int, error) {
	if err := validNode(node); err != nil {
		return 0, fmt.Errorf("sweep node: %w", err)
	}
	// The node may not be dead, only cut off for longer than its ZooKeeper session (frozen, paused,
	// partitioned): without its synced mark it records its routes again once it can, and push-route
	// meanwhile treats its users as unsure. The mark goes before the routes and again after them, so
	// routes the node re-records while the sweep runs are recorded once more afterwards.
	if err := s.del(ctx, syncedKey(node)); err != nil {
		return 0, fmt.Errorf("sweep node: %w", err)
	}
	removed := 0
	for _, key := range indexKeys(node) {
		n, err := s.sweepIndex(ctx, node, key)
		removed += n
		if err != nil {
			return removed, fmt.Errorf("sweep node: %w", err)
		}
		// Only once its routes are gone: a sweeper that dies halfway leaves the rest for the next.
		if err := s.del(ctx, key); err != nil {
			return removed, fmt.Errorf("sweep node: %w", err)
		}
	}
	if err := s.del(ctx, syncedKey(node)); err != nil {
		return removed, fmt.Errorf("sweep node: %w", err)
	}
	return removed, nil
}

// sweepIndex removes node's routes of every uid in one index key.
func (s *Store) sweepIndex(ctx context.Context, node, key string) (int, error) {
	removed := 0
	// SSCAN rather than SPOP: a sweeper that dies halfway leaves the index whole for the next one.
	var cursor uint64
	for {
		uids, next, err := s.rdb.SScan(ctx, key, cursor, "", sweepBatch).Result()
		if err != nil {
			s.failed(err)
			return removed, err
		}
		if len(uids) > 0 {
			calls := make([]scriptCall, len(uids))
			for i, uid := range uids {
				calls[i] = scriptCall{script: sweepScript, keys: []string{routeKey(uid)}, args: []any{node}}
			}
			err := s.runPipelined(ctx, calls, nil)
			for _, c := range calls {
				if n, err := c.cmd.Int(); err == nil {
					removed += n
				}
			}
			if err != nil {
				return removed, err
			}
		}
		cursor = next
		if cursor == 0 {
			return removed, nil
		}
	}
}

func (s *Store) del(ctx context.Context, key string) error {
	err := s.rdb.Del(ctx, key).Err()
	s.failed(err)
	return err
}

// indexKeys names every key of node's index: its shards, and the unsharded key of older versions.
func indexKeys(node string) []string {
	keys := make([]string, 0, nodeIndexShards+1)
	for k := range nodeIndexShards {
		keys = append(keys, nodeUIDsKey(node, k))
	}
	return append(keys, legacyNodeUIDsKey(node))
}

// NodeUIDs lists the uids in node's index, for a node reconciling its routes with the connections it
// really holds after a restart or a Redis outage. It reads the sets in batches rather than with
// SMEMBERS so a large index does not stall Redis.
func (s *Store) NodeUIDs(ctx context.Context, node string) ([]string, error) {
	if err := validNode(node); err != nil {
		return nil, fmt.Errorf("list node uids: %w", err)
	}
	var out []string
	seen := make(map[string]struct{})
	for _, key := range indexKeys(node) {
		var cursor uint64
		for {
			uids, next, err := s.rdb.SScan(ctx, key, cursor, "", scanBatch).Result()
			if err != nil {
				s.failed(err)
				return nil, fmt.Errorf("list node uids: %w", err)
			}
			// SSCAN may return an element more than once.
			for _, uid := range uids {
				if _, dup := seen[uid]; !dup {
					seen[uid] = struct{}{}
					out = append(out, uid)
				}
			}
			cursor = next
			if cursor == 0 {
				break
			}
		}
	}
	return out, nil
}

// Ping checks that Redis answers in the mode the client expects (CheckMode), for readiness probes. On
// a cluster it is enough that one master answers: a master that fails costs only its own slots, which
// is not a reason to take a whole service out of its load balancer.
func (s *Store) Ping(ctx context.Context) error {
	// Only a wrong mode fails here: its other errors come from whichever node it asked.
	if err := s.CheckMode(ctx); errors.Is(err, ErrMisconfigured) {
		return err
	}
	var errs []error
	for addr, err := range s.Servers(ctx) {
		if err == nil {
			return nil
		}
		errs = append(errs, fmt.Errorf("%s: %w", addr, err))
	}
	return fmt.Errorf("ping redis: %w", errors.Join(errs...))
}

func validRoute(r Route) error {
	if err := validIDs(r.UID, r.Node); err != nil {
		return err
	}
	if r.ConnID == "" {
		return fmt.Errorf("%w: empty conn id", ErrInvalid)
	}
	// The separator inside a device would shift the fields of the stored value.
	if strings.Contains(r.Device, "|") {
		return fmt.Errorf("%w: device %q contains |", ErrInvalid, r.Device)
	}
	return nil
}

func validIDs(uid, node string) error {
	if uid == "" {
		return fmt.Errorf("%w: empty uid", ErrInvalid)
	}
	return validNode(node)
}

// validNode rejects node ids that would break the value format or the compare-and-delete prefix match.
func validNode(node string) error {
	if node == "" {
		return fmt.Errorf("%w: empty node id", ErrInvalid)
	}
	if strings.Contains(node, "|") {
		return fmt.Errorf("%w: node id %q contains |", ErrInvalid, node)
	}
	return nil
}
