-- mark_synced records that a node's routes are all in this Redis: the node runs it after recording
-- every route it holds (at start, and after Redis was unreachable). A Redis that restarts empty, or
-- a replica promoted before it had the key, loses the mark with the routes, which is how the node and
-- push-route tell a directory being rebuilt from users who are simply offline.
--
-- KEYS[1]  the node's mark, herald:node:{<node-id>}:synced
-- ARGV[1]  when, unix milliseconds (for operators reading the key)
--
-- Returns 1.
redis.call('SET', KEYS[1], ARGV[1])
return 1
