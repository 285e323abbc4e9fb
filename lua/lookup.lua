-- lookup reads every connection of a uid. Callers pipeline one call per uid, so reading the routes of
-- a whole push request costs one round trip however many uids it names.
--
-- KEYS[1]  the uid's route hash, herald:route:{<uid>}
--
-- Returns the flat list conn_id, value, conn_id, value, … (empty when the uid has no route); each value
-- is "node-id|device|connected_at_ms".
return redis.call('HGETALL', KEYS[1])
