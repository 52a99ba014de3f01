-- Give the lease up only if we still hold it (never delete a successor's).
-- KEYS[1] the lease key; ARGV[1] the holder.
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
