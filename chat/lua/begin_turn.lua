-- Begin the bot's turn: take the conversation's turn lock and, if we got it, read its record
-- and every message the bot has not seen yet, in one step.
-- KEYS[1] lock  KEYS[2] record (hash)  KEYS[3] log (list)
-- ARGV[1] token  ARGV[2] lock time to live in ms
-- Returns false if the lock is held, else {record as a flat list, messages after bot_seq}.
-- include: conversation.lua
return take_turn(KEYS[1], KEYS[2], KEYS[3], ARGV[1], ARGV[2])
