-- Remove up to ARGV[1] waiting messages from the head of a Dramatiq queue, atomically.
--
-- KEYS[1] Q (list)  KEYS[2] Q.msgs (hash)
-- Only waiting messages go: those a worker holds (in its __acks__ set) keep
-- their data so the worker can ack them, and the delayed (Q.DQ) and dead
-- letters (Q.XQ) are never touched — unlike Dramatiq's own flush, which
-- deletes the dead letters too. Returns the number of messages removed.

local ids = redis.call("LRANGE", KEYS[1], 0, tonumber(ARGV[1]) - 1)
if #ids > 0 then
  for _, id in ipairs(ids) do
    redis.call("HDEL", KEYS[2], id)
  end
  redis.call("LTRIM", KEYS[1], #ids, -1)
end
return #ids
