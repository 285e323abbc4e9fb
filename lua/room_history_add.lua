-- room_history_add keeps a room message in the room's history, the last N messages, for members that
-- join again with "since" to recover what they missed.
--
-- KEYS[1]  the room's history stream, herald:room:{<room>}:history (the room hash's slot)
-- ARGV[1]  message id
-- ARGV[2]  message data (JSON)
-- ARGV[3]  message ts (unix ms)
-- ARGV[4]  N: how many messages the history keeps
-- ARGV[5]  how long the history outlives its last message, in milliseconds
--
-- Returns the stream entry id.
local entry = redis.call('XADD', KEYS[1], 'MAXLEN', tonumber(ARGV[4]), '*', 'id', ARGV[1], 'data', ARGV[2], 'ts', ARGV[3])
redis.call('PEXPIRE', KEYS[1], tonumber(ARGV[5]))
return entry
