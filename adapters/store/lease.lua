-- Take or renew the sampler's lease: free, expired (Redis dropped the key) or ours.
-- KEYS[1] the lease key; ARGV[1] the holder; ARGV[2] time to live in ms.
-- Returns {holder, ms left} after the attempt.
local current = redis.call('GET', KEYS[1])
if (not current) or current == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return {ARGV[1], tonumber(ARGV[2])}
end
return {current, redis.call('PTTL', KEYS[1])}
