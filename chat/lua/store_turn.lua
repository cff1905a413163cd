-- Store one bot turn atomically: its messages, each with the next seq (published together), then
-- the record's new fields; keep the conversation for the retention period; and, when asked, end
-- the turn as end_turn.lua does, saving its round trip. Only the holder of the turn lock may (a
-- fencing token: a worker that lost its lock mid-turn writes nothing).
-- KEYS[1] record (hash)  KEYS[2] log (list)  KEYS[3] client ids (hash)  KEYS[4] turn lock
-- ARGV[1] channel  ARGV[2] retention in seconds  ARGV[3] lock token
-- ARGV[4] "1" to free the lock once stored
-- ARGV[5] n, the number of messages; ARGV[6 .. 5+n] the messages as JSON without their "{"
-- ARGV[6+n ..] field, value, field, value … for the record
-- Returns {last seq, more}: more is 1 when the lock was freed and a visitor message still waits
-- for the bot. {-1, 0} if there is no such conversation, {-2, 0} if the lock is not ours,
-- {-3, 0} if the conversation closed meanwhile (the visitor ended it).
-- include: conversation.lua
if redis.call("EXISTS", KEYS[1]) == 0 then
  return {-1, 0}
end
if redis.call("GET", KEYS[4]) ~= ARGV[3] then
  return {-2, 0}
end
if redis.call("HGET", KEYS[1], "status") == "closed" then
  return {-3, 0}
end
local count = tonumber(ARGV[5])
local seq = tonumber(redis.call("HGET", KEYS[1], "seq") or "0")
local stored = {}
for i = 1, count do
  seq = redis.call("HINCRBY", KEYS[1], "seq", 1)
  stored[i] = '{"seq":' .. seq .. ',' .. ARGV[5 + i]
  redis.call("RPUSH", KEYS[2], stored[i])
end
if count > 0 then
  -- one doorbell for the whole turn: compact JSON holds no raw newline, so it separates them
  redis.call("PUBLISH", ARGV[1], table.concat(stored, "\n"))
end
if #ARGV > 5 + count then
  redis.call("HSET", KEYS[1], unpack(ARGV, 6 + count))
end
keep_alive(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[2]))
if ARGV[4] ~= "1" then
  return {seq, 0}
end
redis.call("DEL", KEYS[4])
local bot_seq = tonumber(redis.call("HGET", KEYS[1], "bot_seq") or "0") or 0
return {seq, unanswered(KEYS[1], KEYS[2], bot_seq)}
