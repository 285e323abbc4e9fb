-- mark_pending sets a uid's pending marker: a message was just stored for the user (push-route writes
-- the message to MySQL first, then marks). Each mark changes the marker's value, which is what lets
-- clear_pending tell that a message arrived while it looked.
--
-- KEYS[1]  the uid's pending marker, herald:pending:{<uid>}
-- ARGV[1]  the message's ttl in milliseconds: the marker lives at least this long
--
-- Returns the marker's new value.
local v = redis.call('INCR', KEYS[1])
local ttl = tonumber(ARGV[1])
if redis.call('PTTL', KEYS[1]) < ttl then
  redis.call('PEXPIRE', KEYS[1], ttl)
end
return v
