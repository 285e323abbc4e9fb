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
	markScript       = loadScript("mark_pending.lua")
	clearScript      = loadScript("clear_pending.lua")
	markSynced       = loadScript("mark_synced.lua")
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
//
// On a cluster the pipeline is split by master, and one master failing fails only its own commands:
// every command keeps its own reply or error, for callers that can use a partial answer. The error
// returned is the first command's error, if any.
func (s *Store) runPipelined(ctx context.Context, calls []scriptCall, extra func(redis.Pipeliner)) error {
	pipe := s.rdb.Pipeline()
	for i := range calls {
		c := &calls[i]
		c.cmd = c.script.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	if extra != nil {
		extra(pipe)
	}
	cmds, _ := pipe.Exec(ctx)
	var retry []int
	for i := range calls {
		if isNoScript(calls[i].cmd.Err()) {
			retry = append(retry, i)
		}
	}
	if len(retry) > 0 {
		pipe = s.rdb.Pipeline()
		for _, i := range retry {
			c := &calls[i]
			c.cmd = c.script.Eval(ctx, pipe, c.keys, c.args...)
		}
		_, _ = pipe.Exec(ctx)
	}
	// Exec reports only the first failure, and the retried calls have new commands.
	for _, c := range calls {
		if err := c.cmd.Err(); err != nil {
			s.failed(err)
			return err
		}
	}
	for _, cmd := range cmds {
		if err := cmd.Err(); err != nil && !isNoScript(err) {
			s.failed(err)
			return err
		}
	}
	return nil
}

// run runs one script on its own, reporting a failure as runPipelined does.
func (s *Store) run(ctx context.Context, script *redis.Script, keys []string, args ...any) *redis.Cmd {
	cmd := script.Run(ctx, s.rdb, keys, args...)
	s.failed(cmd.Err())
	return cmd
}

func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}
