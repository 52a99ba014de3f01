-- One more attempt under KEYS[1] within a window of ARGV[1] ms that starts at the first:
-- the count after this one. Atomic, so concurrent logins each get their own number.
local count = redis.call("INCR", KEYS[1])
if count == 1 then
  redis.call("PEXPIRE", KEYS[1], ARGV[1])
end
return count
