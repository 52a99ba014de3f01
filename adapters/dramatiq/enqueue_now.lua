-- Move delayed Dramatiq messages to the front of their queue, atomically per call.
--
-- KEYS[1] Q (list)  KEYS[2] Q.msgs (hash)  KEYS[3] Q.DQ (list)  KEYS[4] Q.DQ.msgs (hash)
-- ARGV    quadruples: old redis_message_id, sha1 of the stored message,
--         fresh redis_message_id, the message rewritten without its eta
--
-- What a worker does at the eta (enqueue on Q, ack on Q.DQ), done now in one
-- step, and LPUSHed: workers LPOP, so it is the next to be fetched. Only a
-- message still in the Q.DQ list moves: one a worker holds until its eta would
-- be enqueued again by that worker. The sha1 proves the rewrite is of what is
-- stored. Returns {moved, {old ids not found}}.

local moved, missing = 0, {}
for i = 1, #ARGV, 4 do
  local old_id, digest, new_id, message = ARGV[i], ARGV[i + 1], ARGV[i + 2], ARGV[i + 3]
  local stored = redis.call("HGET", KEYS[4], old_id)
  if stored and redis.sha1hex(stored) == digest and redis.call("LREM", KEYS[3], 1, old_id) == 1 then
    redis.call("HDEL", KEYS[4], old_id)
    redis.call("HSET", KEYS[2], new_id, message)
    redis.call("LPUSH", KEYS[1], new_id)
    moved = moved + 1
  else
    missing[#missing + 1] = old_id
  end
end
return {moved, missing}
