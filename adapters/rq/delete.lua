-- Delete failed RQ jobs and their data, atomically per call. (common.lua is prepended.)
--
-- KEYS[1] failed registry (zset)
-- ARGV[1] key root ("rq:")   ARGV[2] now, as RQ writes times
-- ARGV[3] "ids" to delete the ids in ARGV[5..], or "range" to take the next
--         chunk of the registry: ARGV[4] = "max_score offset count"
--
-- Deletes what RQ's Job.delete deletes (common.lua's delete_job): the job hash, its
-- dependents and dependencies sets, its results stream and executions, its place in
-- its group and its rate-limit slot. Only ids still in the registry are touched.
-- Returns {deleted, {ids not found}, ids examined}.

local root, now_iso = ARGV[1], ARGV[2]
local ids
if ARGV[3] == "range" then
  local max_score, offset, count = string.match(ARGV[4], "(%S+) (%d+) (%d+)")
  ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", max_score, "LIMIT", offset, count)
else
  ids = {}
  for i = 5, #ARGV do ids[#ids + 1] = ARGV[i] end
end

local now_ts = math.floor(clock_ms() / 1000)
local deleted, missing = 0, {}
for _, id in ipairs(ids) do
  if redis.call("ZREM", KEYS[1], id) == 1 then
    local f = redis.call("HMGET", root .. "job:" .. id, "group_id", "rate_limit_key")
    delete_job(root, id, f[1], f[2], now_ts, now_iso)
    deleted = deleted + 1
  else
    missing[#missing + 1] = id
  end
end
return {deleted, missing, #ids}
