-- End the bot's turn: free the lock (if still ours) and say whether a visitor message arrived
-- that the bot has not answered (a worker that found the lock taken left it to us).
-- KEYS[1] lock  KEYS[2] record (hash)  KEYS[3] log (list)
-- ARGV[1] token
-- Returns 1 when the bot should take another turn, else 0.
-- include: conversation.lua
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("DEL", KEYS[1])
end
return unanswered(KEYS[2], KEYS[3])
