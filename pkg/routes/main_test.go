package routes

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/heraldpush/herald/pkg/testenv"
	"github.com/redis/go-redis/v9"
)

// srv is the package's private Redis. Tests share it one after another (none is parallel) and each
// starts from an empty database.
var srv *testenv.Redis

func TestMain(m *testing.M) {
	testenv.Main(m, func(g *testenv.Group) (err error) {
		srv, err = g.Redis()
		return err
	})
}

// newStore empties the shared Redis and returns a Store over a fresh client, the client (for checks
// behind the Store's back) and a hook that sees every command the Store sends.
func newStore(tb testing.TB) (*Store, *redis.Client, *recorder) {
	tb.Helper()
	return newStoreAt(tb, srv.Addr)
}

func newStoreAt(tb testing.TB, addr string) (*Store, *redis.Client, *recorder) {
	tb.Helper()
	return newStoreWith(tb, &redis.Options{Addr: addr})
}

func newStoreWith(tb testing.TB, opt *redis.Options) (*Store, *redis.Client, *recorder) {
	tb.Helper()
	addr := opt.Addr
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	tb.Cleanup(func() { rdb.Close() })
	if err := rdb.FlushAll(context.Background()).Err(); err != nil {
		tb.Fatal(err)
	}
	// The Store gets its own client so that the test's checks are not counted as the Store's commands.
	client := redis.NewClient(opt)
	tb.Cleanup(func() { client.Close() })
	rec := &recorder{}
	client.AddHook(rec)
	return NewStore(client), rdb, rec
}

// recorder is a go-redis hook that counts round trips (one per Process, one per pipeline) and keeps
// the arguments of every command sent.
type recorder struct {
	process   atomic.Int64
	pipelines atomic.Int64

	// mu guards cmds.
	mu   sync.Mutex
	cmds [][]any
}

func (r *recorder) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *recorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.process.Add(1)
		r.keep(cmd)
		return next(ctx, cmd)
	}
}

func (r *recorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.pipelines.Add(1)
		for _, cmd := range cmds {
			r.keep(cmd)
		}
		return next(ctx, cmds)
	}
}

func (r *recorder) keep(cmd redis.Cmder) {
	r.mu.Lock()
	r.cmds = append(r.cmds, cmd.Args())
	r.mu.Unlock()
}

// roundTrips returns the round trips since the last reset and starts counting again.
func (r *recorder) roundTrips() int64 {
	return r.process.Swap(0) + r.pipelines.Swap(0)
}

func (r *recorder) sent() [][]any {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([][]any(nil), r.cmds...)
}
