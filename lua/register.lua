-- register records one connection of a uid: which node holds it, from which device, since when; and
-- tells whether the user may have pending offline messages, so a connect with nothing pending costs no
-- further lookup.
--
-- KEYS[1]  the uid's route hash, herald:route:{<uid>}
-- KEYS[2]  the uid's pending marker, herald:pending:{<uid>}
-- ARGV[1]  conn_id, the hash field
-- ARGV[2]  the route value, "node-id|device|connected_at_ms"
--
-- Returns {new, pending}: new is 1 when the field is new, 0 when it replaced a value (a node
-- re-recording its routes after a Redis outage, or a retried call); pending is 1 when the marker is set.
--
-- The node's own index of uids lives on another hash slot; the caller updates it in a separate command.
local new = redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
return {new, redis.call('EXISTS', KEYS[2])}
