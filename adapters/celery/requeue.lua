-- Requeue one failed Celery task when the broker and the result backend share a
-- Redis database, atomically: push the new message onto its priority list and
-- delete the FAILURE record, only if the record is still the one that was read.
--
-- KEYS[1] the result record (celery-task-meta-ID)   KEYS[2] the priority list
-- ARGV[1] SHA1 of the record as read                 ARGV[2] the new message (kombu's envelope)
-- Returns 1 when requeued, 0 when the record changed or is gone (nothing written).

local record = redis.call("GET", KEYS[1])
if not record or redis.sha1hex(record) ~= ARGV[1] then
  return 0
end
redis.call("LPUSH", KEYS[2], ARGV[2])
redis.call("DEL", KEYS[1])
return 1
