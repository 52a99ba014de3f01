-- Remove up to ARGV[5] ready jobs of an Arq queue, atomically per call.
--
-- KEYS[1] the queue (zset)
-- ARGV[1] "arq:job:"   ARGV[2] "arq:in-progress:"   ARGV[3] "arq:retry:"
-- ARGV[4] the highest score to take (now, when the purge started)   ARGV[5] how many
-- ARGV[6] how many ready jobs to skip from the start (running ones kept so far)
--
-- Running jobs (an in-progress key) are kept: their worker finishes them. The
-- job record and try counter of each removed job go too; results never do.
-- Returns {removed, kept, examined}.

local ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[4], "LIMIT", tonumber(ARGV[6]), tonumber(ARGV[5]))
local removed, kept = 0, 0
for _, id in ipairs(ids) do
  if redis.call("EXISTS", ARGV[2] .. id) == 1 then
    kept = kept + 1
  else
    redis.call("ZREM", KEYS[1], id)
    redis.call("DEL", ARGV[1] .. id, ARGV[3] .. id)
    removed = removed + 1
  end
end
return {removed, kept, #ids}
