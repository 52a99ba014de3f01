-- Delete waiting Celery messages from their priority lists (kombu's Redis transport) so no
-- worker ever takes them, atomically per call: each exact message, as it was read.
--
-- KEYS[i] the priority list message i was read from   ARGV[i] that message (kombu's envelope)
-- LREM with count -1 looks from the tail, where workers take from: the next to run are
-- found first (O(its place from the tail)). A message a worker has taken meanwhile is no
-- longer there: it is reported, never guessed at.
-- Returns the 1-based indexes of the messages removed.

local removed = {}
for i, key in ipairs(KEYS) do
  if redis.call("LREM", key, -1, ARGV[i]) == 1 then
    removed[#removed + 1] = i
  end
end
return removed
