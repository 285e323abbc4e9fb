-- synced tells whether a node's routes are all in this Redis (see mark_synced.lua).
--
-- KEYS[1]  the node's mark, herald:node:{<node-id>}:synced
--
-- Returns 1 when the mark is there, 0 when it is not.
return redis.call('EXISTS', KEYS[1])
