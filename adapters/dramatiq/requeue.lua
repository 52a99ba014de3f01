-- Move Dramatiq dead letters back to their queue, atomically per call.
--
-- KEYS[1] Q.XQ (zset)  KEYS[2] Q.XQ.msgs (hash)  KEYS[3] Q (list)  KEYS[4] Q.msgs (hash)
-- ARGV    quadruples: old redis_message_id, sha1 of the stored message,
--         fresh redis_message_id, the rewritten message (retries reset)
--
-- Does what Dramatiq's own "enqueue" command does (HSET Q.msgs, RPUSH Q) in
-- the same step as taking the message out of the dead letters, so it is in
-- one place or the other, never in neither. The message is rewritten by the
-- caller (Lua's cjson would turn [] into {} and round big numbers); the sha1
-- proves it is rewriting what is still stored. A message no longer in XQ (or
-- changed) is reported and left alone: a double-click cannot enqueue twice.
-- Returns {moved, {old ids not found}}.

local moved, missing = 0, {}
for i = 1, #ARGV, 4 do
  local old_id, digest, new_id, message = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local stored = redis.call("HGET", KEYS[2], old_id)
  if redis.call("ZSCORE", KEYS[1], old_id) and stored and redis.sha1hex(stored) == digest then
    redis.call("ZREM", KEYS[1], old_id)
    redis.call("HDEL", KEYS[2], old_id)
    redis.call("HSET", KEYS[4], new_id, message)
    redis.call("RPUSH", KEYS[3], new_id)
    moved = moved + 1
  else
    missing[#missing + 1] = old_id
  end
end
return {moved, missing}
