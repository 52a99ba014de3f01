-- Delete waiting or deferred Arq jobs so they never run, atomically per call.
--
-- KEYS[1] the queue (zset)
-- ARGV[1] "arq:job:"   ARGV[2] "arq:in-progress:"   ARGV[3] "arq:retry:"   ARGV[4..] job ids
--
-- A job a worker has started (in-progress key) is left alone. A worker takes a
-- job by WATCHing its in-progress key, checking the score, then MULTI/EXEC: the
-- key is touched here (set and deleted) so a worker between its check and its
-- EXEC is refused by Redis instead of finding the record gone and writing a
-- "job expired" failure. Returns {deleted, {ids not waiting or deferred here}}.

local deleted, missing = 0, {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local running = ARGV[2] .. id
  if redis.call("ZSCORE", KEYS[1], id) and redis.call("EXISTS", running) == 0 then
    redis.call("ZREM", KEYS[1], id)
    redis.call("DEL", ARGV[1] .. id, ARGV[3] .. id)
    redis.call("SET", running, "", "PX", 1)
    redis.call("DEL", running)
    deleted = deleted + 1
  else
    missing[#missing + 1] = id
  end
end
return {deleted, missing}
