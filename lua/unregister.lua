-- unregister removes connections of a uid, but only those whose value still names the given node: a
-- conn_id may have been recorded again since, and one node must never drop another node's route
-- (compare-and-delete).
--
-- KEYS[1]     the uid's route hash, herald:route:{<uid>}
-- ARGV[1]     node id; a field is removed only when its value starts with "<node id>|"
-- ARGV[2..n]  conn_ids to remove
--
-- Returns {removed, left}: how many fields were removed, and how many fields naming the node remain for
-- the uid. left = 0 tells the caller that the node's index no longer needs the uid. Redis deletes the
-- hash together with its last field, so an empty route hash never lingers.
local prefix = ARGV[1] .. '|'
local n = #prefix

local removed = 0
for i = 2, #ARGV do
  local v = redis.call('HGET', KEYS[1], ARGV[i])
  if v and string.sub(v, 1, n) == prefix then
    removed = removed + redis.call('HDEL', KEYS[1], ARGV[i])
  end
end

local left = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
  if string.sub(v, 1, n) == prefix then
    left = left + 1
  end
end

return {removed, left}
