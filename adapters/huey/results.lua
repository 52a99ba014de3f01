-- One HSCAN step over a Huey result store hash, read-only: each entry's size,
-- digest and head, not its whole value (a failure is read whole only when new).
--
-- KEYS[1] huey.results.NAME   ARGV[1] cursor   ARGV[2] COUNT   ARGV[3] head bytes
-- ARGV[4] largest value digested (bytes): a larger one is compared by size only
--
-- Returns {next cursor, field, size, sha1, head, field, size, sha1, head, ...},
-- or {"0", "wrongtype", TYPE} when the key is not a hash.

local kind = redis.call("TYPE", KEYS[1]).ok
if kind ~= "hash" then
  return {"0", "wrongtype", kind}
end
local reply = redis.call("HSCAN", KEYS[1], ARGV[1], "COUNT", tonumber(ARGV[2]))
local head = tonumber(ARGV[3])
local digest_limit = tonumber(ARGV[4])
local out = {reply[1]}
local items = reply[2]
for i = 1, #items, 2 do
  local value = items[i + 1]
  out[#out + 1] = items[i]
  out[#out + 1] = #value
  out[#out + 1] = #value <= digest_limit and redis.sha1hex(value) or ""
  out[#out + 1] = string.sub(value, 1, head)
end
return out
