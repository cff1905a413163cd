-- Store one bot turn atomically: its messages, each with the next seq (published together), then
-- the record's new fields; keep the conversation for the retention period; and, when asked, end
-- the turn as end_turn.lua does, saving its round trip. Fenced twice: only the holder of the turn
-- lock may write (a worker that lost its lock mid-turn writes nothing), and only while the
-- conversation is in the status the turn began in (the visitor may have ended it, a person may
-- have taken it). A status change the turn makes travels as its system message and its fields.
-- Every key is the conversation's, for Redis Cluster (forget_visitor.lua runs after a close).
-- KEYS[1] record (hash)  KEYS[2] log (list)  KEYS[3] client ids (hash)  KEYS[4] turn lock
-- ARGV[1] channel  ARGV[2] retention in seconds  ARGV[3] lock token
-- ARGV[4] "1" to free the lock once stored  ARGV[5] the status the turn began in
-- ARGV[6] the store's own id: a store sent again (its connection failed before the reply came
-- back) finds it done and returns what the first run returned, storing nothing twice
-- ARGV[7] n, the number of messages
-- ARGV[8 .. 7+n] the messages as JSON without their "{"  ARGV[8+n ..] field, value, … for the record
-- Returns {last seq, more}: more is 1 when the lock was freed and a visitor message still waits
-- for the bot. {-1, 0} if there is no such conversation, {-2, 0} if the lock is not ours,
-- {-3, 0} if its status changed meanwhile.
-- include: conversation.lua
if redis.call("EXISTS", KEYS[1]) == 0 then
  return {-1, 0}
end
local done = redis.call("HGET", KEYS[3], ARGV[6])
if done then
  local seq, more = string.match(done, "^(-?%d+),(%d)$")
  return {tonumber(seq), tonumber(more)}
end
if redis.call("GET", KEYS[4]) ~= ARGV[3] then
  return {-2, 0}
end
if redis.call("HGET", KEYS[1], "status") ~= ARGV[5] then
  return {-3, 0}
end
local count = tonumber(ARGV[7])
local seq = append_all(KEYS[1], KEYS[2], ARGV[1], ARGV, 8, 7 + count)
if #ARGV > 7 + count then
  redis.call("HSET", KEYS[1], unpack(ARGV, 8 + count))
end
local more = 0
if ARGV[4] == "1" then
  redis.call("DEL", KEYS[4])
  more = unanswered(KEYS[1], KEYS[2])
end
redis.call("HSET", KEYS[3], ARGV[6], seq .. "," .. more)
keep_alive(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[2]))
return {seq, more}
