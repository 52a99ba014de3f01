-- Shared by the RQ move scripts: prepended to each of them when they are loaded.
--
-- Keys are built from ``root``, RQ's key prefix and a colon ("rq:"). The rate limiter
-- is rq 3.0's (rq/rate_limit.py), step for step: a job with a ``rate_limit_key`` is
-- never pushed to its queue directly, but held in ``rl:KEY:rate_limited`` until the
-- limit has a free slot (``rl:KEY:allowed`` holds fewer jobs than its concurrency).

if redis.replicate_commands then pcall(redis.replicate_commands) end  -- TIME then writes, on Redis < 7

local function clock_ms()
  local t = redis.call("TIME")
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end

local function rl_keys(root, name)
  local base = root .. "rl:" .. name
  return base, base .. ":allowed", base .. ":rate_limited"
end

-- ACQUIRE_AND_ENQUEUE: fill free slots with held-back jobs, oldest first.
local function rl_promote(root, name, concurrency, now_ts, now_iso)
  local _, allowed, limited = rl_keys(root, name)
  while redis.call("ZCARD", allowed) < concurrency do
    local popped = redis.call("ZPOPMIN", limited)
    if #popped == 0 then break end
    local id = popped[1]
    local job_key = root .. "job:" .. id
    local f = redis.call("HMGET", job_key, "origin", "status", "enqueue_at_front")
    if f[1] and f[2] == "rate_limited" then
      redis.call("ZADD", allowed, now_ts, id)
      if f[3] == "1" then
        redis.call("LPUSH", root .. "queue:" .. f[1], id)
      else
        redis.call("RPUSH", root .. "queue:" .. f[1], id)
      end
      redis.call("HSET", job_key, "status", "queued", "enqueued_at", now_iso)
    end
  end
end

-- Queue._enqueue_rate_limited_job: register the limit, hold the job back, promote.
local function rl_enqueue(root, job_key, id, name, concurrency, at_front, now_ts, now_iso)
  local config, _, limited = rl_keys(root, name)
  redis.call("SADD", root .. "rl-keys", name)
  redis.call("HSET", config, "concurrency", concurrency)
  redis.call("HSET", job_key, "status", "rate_limited")
  redis.call("HSET", job_key, "enqueue_at_front", at_front and "1" or "0")
  redis.call("ZADD", limited, now_ts, id)
  rl_promote(root, name, tonumber(concurrency), now_ts, now_iso)
end

-- RateLimitRegistry.cancel after a delete: forget the job; if it held a slot, free it.
local function rl_forget(root, id, name, now_ts, now_iso)
  local config, allowed, limited = rl_keys(root, name)
  redis.call("ZREM", limited, id)
  if redis.call("ZREM", allowed, id) == 1 then
    rl_promote(root, name, tonumber(redis.call("HGET", config, "concurrency") or "0") or 0, now_ts, now_iso)
  end
end

-- What Job.delete removes once the job is out of its queue or registry: its executions
-- (2.x/3.x), its place in its group (2.x/3.x), its hash, dependents and dependencies
-- sets (spelled "job::ID:dependencies" by rq), its results stream (3.0 deletes it; older
-- versions leave it behind, to no use) and its rate-limit slot (3.0).
local function delete_job(root, id, group_id, rl_name, now_ts, now_iso)
  local job_key = root .. "job:" .. id
  local executions = root .. "executions:" .. id
  local origin = redis.call("HGET", job_key, "origin") or ""
  for _, execution in ipairs(redis.call("ZRANGE", executions, 0, 99)) do
    local run = root .. "execution:" .. id .. ":" .. execution
    local worker = redis.call("HGET", run, "worker_name")
    if worker and worker ~= "" then redis.call("SREM", root .. "worker:" .. worker .. ":executions", id .. ":" .. execution) end
    redis.call("DEL", run)
    redis.call("ZREM", root .. "wip:" .. origin, id .. ":" .. execution)
  end
  if group_id and group_id ~= "" then redis.call("SREM", root .. "group:" .. group_id, id) end
  redis.call("DEL", job_key, job_key .. ":dependents", job_key .. ":dependencies", root .. "job::" .. id .. ":dependencies",
    root .. "results:" .. id, executions)
  if rl_name and rl_name ~= "" then rl_forget(root, id, rl_name, now_ts, now_iso) end
end


-- The ids a job waits for: its ``dependency_ids`` (a JSON list, 1.16 to 3.0), or the single
-- ``dependency_id`` of older data.
local function dependencies_of(job_key)
  local f = redis.call("HMGET", job_key, "dependency_ids", "dependency_id")
  local ids = {}
  if f[1] and f[1] ~= "" then
    local ok, decoded = pcall(cjson.decode, f[1])
    if ok and type(decoded) == "table" then
      for _, dep in ipairs(decoded) do ids[#ids + 1] = tostring(dep) end
    end
  end
  if #ids == 0 and f[2] and f[2] ~= "" then ids[1] = f[2] end
  return ids
end
