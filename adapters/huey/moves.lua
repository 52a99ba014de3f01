-- Huey's moves, one member at a time and atomic: nothing is removed unless it is
-- exactly the member read, and nothing is added unless it was removed.
--
-- ARGV[1] the move:
--   "remove"   KEYS[1] queue or schedule; ARGV[2] the exact member: LREM 1 / ZREM.
--   "now"      KEYS[1] schedule, KEYS[2] queue; ARGV[2] member, ARGV[3] the message
--              to run now, ARGV[4] its priority score, ARGV[5] the queue's type when
--              it does not exist ("list", "zset" or ""), ARGV[6] the 8-byte prefix of
--              a priority queue member: ZREM, then RPUSH (a list: its right end is
--              consumed next) or ZADD. -1, and nothing moved, when the queue's type
--              is unknown: a list pushed where a priority consumer pops would stop it.
--   "forget"   KEYS[1] result hash, or the entry's own key ("" field); ARGV[2] field,
--              ARGV[3] sha1 of the value read: HDEL / DEL only if it is still that.
--   "purge"    KEYS[1] queue: its waiting tasks counted and unlinked.
-- Returns the number of members moved or removed.

local move = ARGV[1]
if move == "remove" then
  local kind = redis.call("TYPE", KEYS[1]).ok
  if kind == "list" then
    return redis.call("LREM", KEYS[1], 1, ARGV[2])
  elseif kind == "zset" then
    return redis.call("ZREM", KEYS[1], ARGV[2])
  end
  return 0
elseif move == "now" then
  local kind = redis.call("TYPE", KEYS[2]).ok
  if kind == "none" then
    kind = ARGV[5]
  end
  if kind ~= "list" and kind ~= "zset" then
    return -1
  end
  if redis.call("ZREM", KEYS[1], ARGV[2]) == 0 then
    return 0
  end
  if kind == "zset" then
    redis.call("ZADD", KEYS[2], tonumber(ARGV[4]), ARGV[6] .. ARGV[3])
  else
    redis.call("RPUSH", KEYS[2], ARGV[3])
  end
  return 1
elseif move == "forget" then
  local value
  if ARGV[2] == "" then
    value = redis.call("GET", KEYS[1])
  else
    value = redis.call("HGET", KEYS[1], ARGV[2])
  end
  if not value or redis.sha1hex(value) ~= ARGV[3] then
    return 0
  end
  if ARGV[2] == "" then
    return redis.call("DEL", KEYS[1])
  end
  return redis.call("HDEL", KEYS[1], ARGV[2])
elseif move == "purge" then
  local kind = redis.call("TYPE", KEYS[1]).ok
  local n = 0
  if kind == "list" then
    n = redis.call("LLEN", KEYS[1])
  elseif kind == "zset" then
    n = redis.call("ZCARD", KEYS[1])
  else
    return 0
  end
  redis.call("UNLINK", KEYS[1])
  return n
end
return redis.error_reply("unknown move " .. tostring(move))
