-- Forget a verified visitor's open conversation once it closed, if the index still names it (a
-- newer conversation of the same person keeps its entry). Its own step, after the close: the
-- index is the visitor's key, in another slot of a Redis Cluster than the conversation's. Should
-- it not run (a worker dies in between), the visitor's next hello finds the closed conversation
-- and is offered a new one, as after any close.
-- KEYS[1] the verified visitor's index  ARGV[1] the conversation id
if redis.call("GET", KEYS[1]) == ARGV[1] then
  redis.call("DEL", KEYS[1])
end
return 1
