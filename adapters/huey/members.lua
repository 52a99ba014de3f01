-- A range of a Huey queue (list: next to run first, from its right end; priority
-- zset: lowest score first) or schedule (zset: soonest first), read-only: each
-- member whole when it is at most ARGV[3] bytes, else only its first ARGV[4].
--
-- KEYS[1] the key   ARGV[1] offset   ARGV[2] count   ARGV[3] whole limit   ARGV[4] head bytes
--
-- Returns {TYPE, total, size, whole (1/0), bytes, score, size, whole, bytes, score, ...};
-- scores are strings ("" for a list).

local kind = redis.call("TYPE", KEYS[1]).ok
local offset, count = tonumber(ARGV[1]), tonumber(ARGV[2])
local limit, head = tonumber(ARGV[3]), tonumber(ARGV[4])
local out = {kind}
local members = {}
if kind == "list" then
  out[2] = redis.call("LLEN", KEYS[1])
  local range = {}
  if count > 0 then
    range = redis.call("LRANGE", KEYS[1], -(offset + count), -(offset + 1))
  end
  for i = #range, 1, -1 do
    members[#members + 1] = {range[i], ""}
  end
elseif kind == "zset" then
  out[2] = redis.call("ZCARD", KEYS[1])
  local range = {}
  if count > 0 then
    range = redis.call("ZRANGE", KEYS[1], offset, offset + count - 1, "WITHSCORES")
  end
  for i = 1, #range, 2 do
    members[#members + 1] = {range[i], range[i + 1]}
  end
else
  out[2] = 0
end
for _, m in ipairs(members) do
  local value = m[1]
  out[#out + 1] = #value
  if #value <= limit then
    out[#out + 1] = 1
    out[#out + 1] = value
  else
    out[#out + 1] = 0
    out[#out + 1] = string.sub(value, 1, head)
  end
  out[#out + 1] = m[2]
end
return out
