-- room_history_since returns what a room's history holds after a message: what a member that saw that
-- message last has missed.
--
-- KEYS[1]  the room's history stream, herald:room:{<room>}:history
-- ARGV[1]  the id of the last message the member saw
--
-- Returns {1, id, data, ts, id, data, ts, …} with the messages after it, oldest first, or {0} when the
-- history does not hold that message (it is too old, or the history is off or expired).
local entries = redis.call('XRANGE', KEYS[1], '-', '+')
local out = {0}
for _, e in ipairs(entries) do
  local f = e[2] -- field, value, field, value, … in the order room_history_add wrote them
  if out[1] == 1 then
    table.insert(out, f[2])
    table.insert(out, f[4])
    table.insert(out, f[6])
  elseif f[2] == ARGV[1] then
    out[1] = 1
  end
end
return out
