-- Change a conversation's status in one step (chat/lifecycle.py): the record's new fields and
-- the system message that tells of it (the next seq, published). Fenced by the status: the change
-- is made only from one of the statuses it may leave; a repeated client id stores nothing.
-- Every key is the conversation's, so the step runs on Redis Cluster (forget_visitor.lua, after
-- it, clears a verified visitor's index, which lives in another slot).
-- KEYS[1] record (hash)  KEYS[2] log (list)  KEYS[3] client ids (hash)
-- ARGV[1] the statuses it may leave, comma-separated  ARGV[2] client id or ""
-- ARGV[3] the system message as JSON without its opening "{"  ARGV[4] channel
-- ARGV[5] retention in seconds  ARGV[6] the conversation id (not read; the
-- arguments keep their places)  ARGV[7 ..] field, value, …
-- Returns 1 when stored, 0 when not (another status, or a repeat), -1 if there is no such
-- conversation.
-- include: conversation.lua
local status = redis.call("HGET", KEYS[1], "status")
if not status then
  return -1
end
if ARGV[2] ~= "" and redis.call("HEXISTS", KEYS[3], ARGV[2]) == 1 then
  return 0
end
local allowed = false
for leaving in string.gmatch(ARGV[1], "[^,]+") do
  if leaving == status then
    allowed = true
  end
end
if not allowed then
  return 0
end
local seq = append_all(KEYS[1], KEYS[2], ARGV[4], ARGV, 3, 3)
if ARGV[2] ~= "" then
  redis.call("HSET", KEYS[3], ARGV[2], seq)
end
if #ARGV >= 7 then
  redis.call("HSET", KEYS[1], unpack(ARGV, 7))
end
keep_alive(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[5]))
return 1
