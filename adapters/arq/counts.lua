-- One Arq queue's counts, read-only.
--
-- KEYS[1] the queue (zset of job ids scored by run-at time in ms)
-- ARGV[1] now (ms)   ARGV[2] how many ready jobs to check   ARGV[3] "arq:in-progress:"
--
-- A job stays in its queue while it runs. Workers take ready jobs lowest score
-- first, so the running ones are among the first ready ones: their in-progress
-- keys are checked there. Returns {jobs, ready, running among the checked,
-- checked, score of the first ready job not running (or nil)}.

local total = redis.call("ZCARD", KEYS[1])
local ready = redis.call("ZCOUNT", KEYS[1], "-inf", ARGV[1])
local head = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "WITHSCORES", "LIMIT", 0, tonumber(ARGV[2]))
local running, oldest = 0, false
for i = 1, #head, 2 do
  if redis.call("EXISTS", ARGV[3] .. head[i]) == 1 then
    running = running + 1
  elseif not oldest then
    oldest = head[i + 1]
  end
end
return {total, ready, running, #head / 2, oldest}
