-- Empty every priority list of one Celery queue (kombu's Redis transport), atomically:
-- exactly what the lists held when it ran; messages pushed afterwards are kept.
--
-- KEYS: the queue's lists (NAME, NAME\x06\x163, NAME\x06\x166, NAME\x06\x169)
-- Returns the number of messages removed. UNLINK frees them off the main thread.

local removed = 0
for _, key in ipairs(KEYS) do
  local n = redis.call("LLEN", key)
  if n > 0 then
    removed = removed + n
    redis.call("UNLINK", key)
  end
end
return removed
