-- Delete waiting or scheduled RQ jobs so they never run, atomically per call.
-- (common.lua is prepended.)
--
-- KEYS[1] queue list   KEYS[2] scheduled registry   KEYS[3] deferred registry
-- KEYS[4] ready registry (3.0)
-- ARGV[1] key root ("rq:")   ARGV[2] the queue's name   ARGV[3] now, as RQ writes times
-- ARGV[4..] job ids
--
-- Leaves each job as rq's own Job.delete() does: out of its queue or registry, its hash,
-- dependents and dependencies sets, results stream and executions gone, out of its group,
-- its rate-limit slot freed. Jobs that depend on it stay deferred, as rq leaves them.
-- Only a job that is waiting (status queued, in the list) or scheduled (a member of the
-- scheduled, deferred or ready registry, and not running) is touched: one a worker has
-- taken meanwhile is not found, and a double click deletes nothing twice.
-- Returns {deleted, {ids not found}}.

local root, queue, now_iso = ARGV[1], ARGV[2], ARGV[3]
local now_ms = clock_ms()
local now_ts = math.floor(now_ms / 1000)
local deleted, missing = 0, {}
for i = 4, #ARGV do
  local id = ARGV[i]
  local job_key = root .. "job:" .. id
  local f = redis.call("HMGET", job_key, "origin", "status", "group_id", "rate_limit_key")
  local origin, status = f[1], f[2]
  local found = false
  if (origin == false or origin == queue) and status ~= "started" then
    for k = 2, 4 do
      if not found and redis.call("ZREM", KEYS[k], id) == 1 then found = true end
    end
    if not found and origin == queue and status == "queued" then
      found = redis.call("LREM", KEYS[1], 1, id) == 1
    end
  end
  if found then
    if origin then delete_job(root, id, f[3], f[4], now_ts, now_iso) end
    deleted = deleted + 1
  else
    missing[#missing + 1] = id
  end
end
return {deleted, missing}
