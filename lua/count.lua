-- count tells how many connections of a uid one node holds. It lets a caller that has just removed the
-- uid from the node's index check that no route was registered meanwhile, and put the uid back if so.
--
-- KEYS[1]  the uid's route hash, herald:route:{<uid>}
-- ARGV[1]  node id; a field counts when its value starts with "<node id>|"
--
-- Returns the number of fields naming the node.
local prefix = ARGV[1] .. '|'
local n = #prefix

local count = 0
for _, v in ipairs(redis.call('HVALS', KEYS[1])) do
  if string.sub(v, 1, n) == prefix then
    count = count + 1
  end
end

return count
