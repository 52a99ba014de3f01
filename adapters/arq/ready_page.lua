-- One page of an Arq queue's ready jobs (score <= now), read-only.
--
-- KEYS[1] the queue (zset)
-- ARGV[1] now (ms)   ARGV[2] offset (rank among ready jobs)   ARGV[3] page size
-- ARGV[4] "arq:in-progress:"   ARGV[5] "1": running jobs, "0": waiting ones
-- ARGV[6] the rank to stop at (a budget: the jobs of the other kind are passed over)
--
-- A running job stays in its queue, so waiting = ready without an in-progress
-- key and running = ready with one. Returns {{id, score, ...}, rank to go on from}.

local offset, limit, stop = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[6])
local running = ARGV[5] == "1"
local out, pos = {}, offset
while #out < 2 * limit and pos < stop do
  local batch = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "WITHSCORES", "LIMIT", pos,
                           math.min(2 * limit, stop - pos))
  if #batch == 0 then break end
  for i = 1, #batch, 2 do
    pos = pos + 1
    if (redis.call("EXISTS", ARGV[4] .. batch[i]) == 1) == running then
      out[#out + 1] = batch[i]
      out[#out + 1] = batch[i + 1]
      if #out >= 2 * limit then break end
    end
  end
end
return {out, pos}
