-- Delete Dramatiq dead letters, atomically per call.
--
-- KEYS[1] Q.XQ (zset)  KEYS[2] Q.XQ.msgs (hash)
-- ARGV[1] "ids" to delete the redis_message_ids in ARGV[3..], or "range" to
--         delete the next ARGV[3] oldest with a score up to ARGV[2]
-- Returns {deleted, {ids not found}}.

local ids
if ARGV[1] == "range" then
  ids = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[2], "LIMIT", 0, tonumber(ARGV[3]))
else
  ids = {}
  for i = 3, #ARGV do ids[#ids + 1] = ARGV[i] end
end

local deleted, missing = 0, {}
for _, id in ipairs(ids) do
  if redis.call("ZREM", KEYS[1], id) == 1 then
    redis.call("HDEL", KEYS[2], id)
    deleted = deleted + 1
  else
    missing[#missing + 1] = id
  end
end
return {deleted, missing}
