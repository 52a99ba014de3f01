-- Move failed RQ jobs back to their queue, atomically per call. (common.lua is prepended.)
--
-- KEYS[1] failed registry (zset)   KEYS[2] queue list   KEYS[3] rq:queues (set)
-- ARGV[1] key root ("rq:")   ARGV[2] enqueued_at (RQ time format)
-- ARGV[3] the queue's key, as a member of rq:queues
-- ARGV[4] "ids" to requeue the ids in ARGV[6..], or "range" to take the next
--         chunk of the registry: ARGV[5] = "max_score offset count"
--
-- Leaves the job as RQ's own FailedJobRegistry.requeue does (status queued,
-- started_at/ended_at cleared, enqueued_at now, id pushed at the tail) but in
-- one step, and also lifts the failure TTL so a waiting job cannot expire. A
-- rate-limited job (3.0) goes through its limiter, as rq's requeue sends it.
-- A job that is no longer in the registry, or whose hash is gone, is reported
-- and left alone: a double-click cannot enqueue a job twice.
-- Returns {requeued, {ids not found}, ids examined}.

local ids
if ARGV[4] == "range" then
  local max_score, offset, count = string.match(ARGV[5], "(%S+) (%d+) (%d+)")
  ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", max_score, "LIMIT", offset, count)
else
  ids = {}
  for i = 6, #ARGV do ids[#ids + 1] = ARGV[i] end
end

local root = ARGV[1]
local now_ts = math.floor(clock_ms() / 1000)
local requeued, missing = 0, {}
for _, id in ipairs(ids) do
  local job_key = root .. "job:" .. id
  if redis.call("ZSCORE", KEYS[1], id) and redis.call("EXISTS", job_key) == 1 then
    redis.call("ZREM", KEYS[1], id)
    redis.call("HSET", job_key, "status", "queued", "started_at", "", "ended_at", "", "enqueued_at", ARGV[2])
    redis.call("HDEL", job_key, "exc_info")
    redis.call("PERSIST", job_key)
    local rl = redis.call("HMGET", job_key, "rate_limit_key", "rate_limit_concurrency")
    if rl[1] and rl[1] ~= "" and tonumber(rl[2] or "") then
      rl_enqueue(root, job_key, id, rl[1], rl[2], false, now_ts, ARGV[2])
    else
      redis.call("RPUSH", KEYS[2], id)
    end
    requeued = requeued + 1
  else
    missing[#missing + 1] = id
  end
end
if requeued > 0 then
  redis.call("SADD", KEYS[3], ARGV[3])
end
return {requeued, missing, #ids}
