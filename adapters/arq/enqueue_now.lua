-- Move deferred Arq jobs to the front of the ready ones, atomically per call.
--
-- KEYS[1] the queue (zset)
-- ARGV[1] now (ms)   ARGV[2..] job ids
--
-- Only deferred jobs (score > now) move. They get scores just below the first
-- ready job's (and at most now), keeping their order among themselves, so a
-- worker takes them next. Returns {moved, {ids not deferred here}}.

local now = tonumber(ARGV[1])
local picked, missing = {}, {}
for i = 2, #ARGV do
  local score = redis.call("ZSCORE", KEYS[1], ARGV[i])
  if score and tonumber(score) > now then
    picked[#picked + 1] = {ARGV[i], tonumber(score)}
  else
    missing[#missing + 1] = ARGV[i]
  end
end
if #picked == 0 then return {0, missing} end
table.sort(picked, function(a, b) return a[2] < b[2] or (a[2] == b[2] and a[1] < b[1]) end)
local front = now
local first = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", now, "WITHSCORES", "LIMIT", 0, 1)
if #first > 0 and tonumber(first[2]) - 1 < front then front = tonumber(first[2]) - 1 end
for i, job in ipairs(picked) do
  redis.call("ZADD", KEYS[1], front - #picked + i, job[1])
end
return {#picked, missing}
