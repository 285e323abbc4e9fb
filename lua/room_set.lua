-- room_set records how many members of a room one node holds: the room registry, which lets a room
-- message go only to the nodes that have members.
--
-- KEYS[1]  the room's hash, herald:room:{<room>}: node id → members on that node
-- ARGV[1]  node id
-- ARGV[2]  members on that node now; 0 removes the node's field (and the hash with its last field)
--
-- Returns the number of nodes with members left in the room.
local n = tonumber(ARGV[2])
if n > 0 then
  redis.call('HSET', KEYS[1], ARGV[1], n)
else
  redis.call('HDEL', KEYS[1], ARGV[1])
end
return redis.call('HLEN', KEYS[1])
