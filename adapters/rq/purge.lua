-- Remove up to ARGV[2] waiting jobs from the head of an RQ queue, atomically.
--
-- KEYS[1] queue list   ARGV[1] job key prefix ("rq:job:")   ARGV[2] chunk size
-- Like RQ's Queue.empty, the job hashes and their dependents sets go too.
-- Failed jobs are never touched. Returns the number of jobs removed.

local ids = redis.call("LRANGE", KEYS[1], 0, tonumber(ARGV[2]) - 1)
for _, id in ipairs(ids) do
  redis.call("DEL", ARGV[1] .. id, ARGV[1] .. id .. ":dependents")
end
if #ids > 0 then
  redis.call("LTRIM", KEYS[1], #ids, -1)
end
return #ids
