-- Enqueue scheduled or deferred RQ jobs now, at the front of their queue, atomically per call.
-- (common.lua is prepended.)
--
-- KEYS[1] queue list   KEYS[2] scheduled registry   KEYS[3] deferred registry
-- KEYS[4] ready registry (3.0)   KEYS[5] rq:queues (set)
-- ARGV[1] key root ("rq:")   ARGV[2] the queue's name   ARGV[3] now, as RQ writes times
-- ARGV[4] the queue's key, as a member of rq:queues   ARGV[5..] job ids, the first to run first
--
-- Does what rq's scheduler does when a job's time has come (Queue._enqueue_job): out of the
-- registry, status queued, enqueued_at now, pushed onto the queue (here at the front). A
-- deferred job is also taken out of the dependents sets of the jobs it waited for, so their
-- end cannot enqueue it a second time. A rate-limited job (3.0) goes through its limiter
-- as rq's own enqueue does. A job in none of the registries (run, deleted, or enqueued
-- already: a double click) is not found and left alone.
-- Returns {enqueued, {ids not found}}.

local root, queue, now_iso = ARGV[1], ARGV[2], ARGV[3]
local now_ms = clock_ms()
local now_ts = math.floor(now_ms / 1000)
local enqueued, missing = 0, {}
for i = #ARGV, 5, -1 do  -- each is pushed to the front: the last first, so the first ends at the head
  local id = ARGV[i]
  local job_key = root .. "job:" .. id
  local f = redis.call("HMGET", job_key, "origin", "status", "rate_limit_key", "rate_limit_concurrency")
  local from = nil
  if f[1] == queue and f[2] ~= "started" then
    for k = 2, 4 do
      if not from and redis.call("ZREM", KEYS[k], id) == 1 then from = k end
    end
  end
  if from then
    if from ~= 2 then
      for _, dep in ipairs(dependencies_of(job_key)) do
        redis.call("SREM", root .. "job:" .. dep .. ":dependents", id)
      end
    end
    if f[3] and f[3] ~= "" and tonumber(f[4] or "") then
      rl_enqueue(root, job_key, id, f[3], f[4], true, now_ts, now_iso)
    else
      redis.call("HSET", job_key, "status", "queued", "enqueued_at", now_iso)
      redis.call("LPUSH", KEYS[1], id)
    end
    enqueued = enqueued + 1
  else
    table.insert(missing, 1, id)
  end
end
if enqueued > 0 then redis.call("SADD", KEYS[5], ARGV[4]) end
return {enqueued, missing}
