-- Begin the bot's turn: take the conversation's turn lock and, if we got it, read its record
-- and every message the bot has not seen yet, in one step.
-- KEYS[1] lock  KEYS[2] record (hash)  KEYS[3] log (list)
-- ARGV[1] token  ARGV[2] lock time to live in ms
-- Returns false if the lock is held, else {record as a flat list, messages after bot_seq}.
if not redis.call("SET", KEYS[1], ARGV[1], "NX", "PX", ARGV[2]) then
  return false
end
local bot_seq = tonumber(redis.call("HGET", KEYS[2], "bot_seq") or "0") or 0
return {redis.call("HGETALL", KEYS[2]), redis.call("LRANGE", KEYS[3], bot_seq, -1)}
