-- Delete waiting or delayed Dramatiq messages so they never run, atomically per call.
--
-- KEYS[1] Q (list)  KEYS[2] Q.msgs (hash)  KEYS[3] Q.DQ (list)  KEYS[4] Q.DQ.msgs (hash)
-- ARGV    redis_message_ids
--
-- Only a message still in its list goes (LREM finds it from the head: O(its
-- position)). One a worker has fetched sits in that worker's __acks__ set and
-- in its memory: deleting its data would not stop it (a delayed one is
-- enqueued again at its eta from memory), so it is left alone and reported.
-- Returns {deleted, {ids not found waiting or delayed}}.

local deleted, missing = 0, {}
for _, id in ipairs(ARGV) do
  if redis.call("LREM", KEYS[1], 1, id) == 1 then
    redis.call("HDEL", KEYS[2], id)
    deleted = deleted + 1
  elseif redis.call("LREM", KEYS[3], 1, id) == 1 then
    redis.call("HDEL", KEYS[4], id)
    deleted = deleted + 1
  else
    missing[#missing + 1] = id
  end
end
return {deleted, missing}
