-- Append one message to a conversation: give it the next seq, drop a repeated client id,
-- publish it, and keep the conversation alive for the retention period. A visitor's message
-- to the bot may also begin the bot's turn, saving the round trip of begin_turn.lua.
-- KEYS[1] record (hash)  KEYS[2] log (list)  KEYS[3] client ids (hash id -> seq)
-- KEYS[4] turn lock
-- ARGV[1] client id or ""  ARGV[2] the message as JSON without its opening "{"
-- ARGV[3] channel  ARGV[4] retention in seconds  ARGV[5] "1" to refuse a closed conversation
-- ARGV[6] a turn token, or "": with one, a new message to a conversation with the bot also
-- takes the turn lock if it is free  ARGV[7] the lock's time to live in ms
-- ARGV[8] the most messages a conversation may hold  ARGV[9] (optional) an agent id: the
-- message is the agent's, stored only while the record says that agent holds the conversation
-- ARGV[10] (with ARGV[9]) the time, kept as first_agent_reply_at by the agent's first message
-- Returns {seq, 1, status} for a new message, {seq, 0, status} for a repeated id (even after
-- the close: the client only missed its ack), {0, -1} if there is no such conversation, and
-- {0, -2, "closed"} for a new message to a closed one, {0, -3, status} for one past the cap,
-- {0, -4, status} for an agent's message to a conversation it does not hold. When it took the turn lock:
-- {seq, 1, status, record as a flat list, messages after bot_seq}.
-- include: conversation.lua
local refused, status = refuse_append(KEYS[1], KEYS[3], ARGV[1], ARGV[5], ARGV[8])
if refused then
  return refused
end
if ARGV[9] and ARGV[9] ~= "" then
  if status ~= "agent" or redis.call("HGET", KEYS[1], "agent_id") ~= ARGV[9] then
    return {0, -4, status}
  end
  redis.call("HSETNX", KEYS[1], "first_agent_reply_at", ARGV[10])
end
local seq, message = store_message(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
keep_alive(KEYS[1], KEYS[2], KEYS[3], tonumber(ARGV[4]))
return ring_and_begin(KEYS, ARGV[3], seq, message, status, ARGV[6], ARGV[7])
