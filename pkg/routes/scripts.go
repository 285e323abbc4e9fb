package routes

import (
	"context"
	"errors"
	"fmt"

	"github.com/heraldpush/herald/lua"
	"github.com/redis/go-redis/v9"
)

var (
	registerScript   = loadScript("register.lua")
	unregisterScript = loadScript("unregister.lua")
	sweepScript      = loadScript("sweep.lua")
	countScript      = loadScript("count.lua")
	lookupScript     = loadScript("lookup.lua")
	markScript       = loadScript("mark_pending.lua")
	clearScript      = loadScript("clear_pending.lua")
	markSynced       = loadScript("mark_synced.lua")
	syncedScript     = loadScript("synced.lua")
)

func loadScript(name string) *redis.Script {
	src, err := lua.FS.ReadFile(name)
	if err != nil {
		// The scripts are embedded at build time: a missing one is a programming error.
		panic(fmt.Sprintf("routes: script %s: %v", name, err))
	}
	return redis.NewScript(string(src))
}

// scriptCall is one script run queued into a pipeline; cmd holds its reply after runPipelined.
type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []any
	cmd    *redis.Cmd
}

// runPipelined runs calls, plus whatever extra queues, in one round trip with EVALSHA. A Redis that has
// not cached a script (new, restarted, or a cluster shard seeing it first) answers NOSCRIPT; only those
// calls are sent again in full with EVAL, which caches the script for the next time. Script.Run cannot do
// this inside a pipeline because a queued command has no reply yet when Run looks at it.
func runPipelined(ctx context.Context, rdb redis.UniversalClient, calls []scriptCall, extra func(redis.Pipeliner)) error {
	pipe := rdb.Pipeline()
	for i := range calls {
		c := &calls[i]
		c.cmd = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	if extra != nil {
		extra(pipe)
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil && !isNoScript(err) {
		return err
	}
	// Exec reports only the first failure: a NOSCRIPT may hide a failed command behind it.
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil && !isNoScript(err) {
			return err
		}
	}
	var retry []int
	for i := range calls {
		if isNoScript(calls[i].cmd.Err()) {
			retry = append(retry, i)
		}
	}
	if len(retry) == 0 {
		return nil
	}
	pipe = rdb.Pipeline()
	for _, i := range retry {
		c := &calls[i]
		c.cmd = c.script.Eval(ctx, pipe, c.keys, c.args...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	return nil
}

func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}
