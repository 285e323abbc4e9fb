-- sweep removes every connection of a uid held by one node, used when that node has died. Running it
-- twice, or from two callers at once, removes each field once: the second run finds nothing left.
--
-- KEYS[1]  the uid's route hash, herald:route:{<uid>}
-- ARGV[1]  node id; every field whose value starts with "<node id>|" is removed
--
-- Returns the number of fields removed. Redis deletes the hash together with its last field.
local prefix = ARGV[1] .. '|'
local n = #prefix

-- HGETALL answers field, value, field, value, …
local all = redis.call('HGETALL', KEYS[1])
local removed = 0
for i = 1, #all, 2 do
  if string.sub(all[i + 1], 1, n) == prefix then
    removed = removed + redis.call('HDEL', KEYS[1], all[i])
  end
end

return removed
