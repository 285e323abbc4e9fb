-- clear_pending removes a uid's pending marker, but only when it still holds the value the caller read
-- before it found nothing pending in MySQL: a message stored meanwhile has marked it again, and its
-- marker must stay (compare-and-delete).
--
-- KEYS[1]  the uid's pending marker, herald:pending:{<uid>}
-- ARGV[1]  the value read before the lookup
--
-- Returns 1 when the marker was removed, 0 when it changed or was already gone.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
