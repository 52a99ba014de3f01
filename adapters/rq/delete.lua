-- Delete failed RQ jobs and their data, atomically per call.
--
-- KEYS[1] failed registry (zset)
-- ARGV[1] job key prefix ("rq:job:")   ARGV[2] results key prefix ("rq:results:")
-- ARGV[3] "ids" to delete the ids in ARGV[5..], or "range" to take the next
--         chunk of the registry: ARGV[4] = "max_score offset count"
--
-- Deletes what RQ's Job.delete deletes: the job hash, its dependents and
-- dependencies sets (RQ 2.x spells that key "rq:job::ID:dependencies"), its
-- results stream and executions. Only ids still in the registry are touched.
-- Returns {deleted, {ids not found}, ids examined}.

local ids
if ARGV[3] == "range" then
  local max_score, offset, count = string.match(ARGV[4], "(%S+) (%d+) (%d+)")
  ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", max_score, "LIMIT", offset, count)
else
  ids = {}
  for i = 5, #ARGV do ids[#ids + 1] = ARGV[i] end
end

local deleted, missing = 0, {}
for _, id in ipairs(ids) do
  if redis.call("ZREM", KEYS[1], id) == 1 then
    local job_key = ARGV[1] .. id
    redis.call("DEL", job_key, job_key .. ":dependents", job_key .. ":dependencies",
      ARGV[1] .. ":" .. id .. ":dependencies", ARGV[2] .. id, "rq:executions:" .. id)
    deleted = deleted + 1
  else
    missing[#missing + 1] = id
  end
end
return {deleted, missing, #ids}
