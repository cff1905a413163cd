-- A visitor's message and the bot's answer to it, stored in one step when the worker computed
-- the answer from what it knew of the conversation and that is still so: the conversation is
-- with the bot, nothing was stored since (its seq), the bot's state and the visitor are as the
-- worker saw them, and no turn holds the lock. Then the visitor's message, the bot's messages
-- after it and the record's new fields are stored, the doorbell rung once for all of them,
-- and no turn lock is ever taken (docs/operating.md, "A bot turn in one round trip").
-- Otherwise it does exactly what append.lua does for a visitor's message (the answer is
-- dropped, and the worker answers under the lock as ever).
-- KEYS[1] record (hash)  KEYS[2] log (list)  KEYS[3] client ids (hash)  KEYS[4] turn lock
-- ARGV[1 .. 8] as append.lua's (ARGV[5] is "1": a closed conversation refuses)
-- ARGV[9] the seq the worker knew  ARGV[10] the record's `bot` field as the worker knew it
-- ARGV[11] its `visitor` field  ARGV[12] n, the number of bot messages
-- ARGV[13 .. 12+n] the bot's messages as JSON without their "{"
-- ARGV[13+n ..] field, value, … for the record (bot_seq is set here: the visitor's seq)
-- Returns {seq, 2, "bot", last seq} when the answer was stored; else what append.lua returns.
-- include: conversation.lua
local refused, status = refuse_append(KEYS[1], KEYS[3], ARGV[1], ARGV[5], ARGV[8])
if refused then
  return refused
end
local known_seq, bot, visitor = unpack(redis.call("HMGET", KEYS[1], "seq", "bot", "visitor"))
local answerable = status == "bot" and known_seq == ARGV[9] and bot == ARGV[10] and
  visitor == ARGV[11] and redis.call("EXISTS", KEYS[4]) == 0
local seq, message = store_message(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
keep_alive(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[4]))
if not answerable then
  return ring_and_begin(KEYS, ARGV[3], seq, message, status, ARGV[6], ARGV[7])
end
local count = tonumber(ARGV[12])
local last = append_all(KEYS[1], KEYS[2], ARGV[3], ARGV, 13, 12 + count, {message})
redis.call("HSET", KEYS[1], "bot_seq", seq, unpack(ARGV, 13 + count))
return {seq, 2, status, last}
