-- End the bot's turn: free the lock (if still ours) and say whether a visitor message arrived
-- that the bot has not answered (a worker that found the lock taken left it to us).
-- KEYS[1] lock  KEYS[2] record (hash)  KEYS[3] log (list)
-- ARGV[1] token  ARGV[2] the bot_seq just stored
-- Returns 1 when the bot should take another turn, else 0.
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("DEL", KEYS[1])
end
if redis.call("HGET", KEYS[2], "status") ~= "bot" then
  return 0
end
for _, message in ipairs(redis.call("LRANGE", KEYS[3], tonumber(ARGV[2]), -1)) do
  -- frames are stored compact ({"seq":…,"from":"visitor",…}); quotes inside texts are escaped
  if string.find(message, '"from":"visitor"', 1, true) then
    return 1
  end
end
return 0
