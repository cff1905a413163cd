-- The agent chose `available` or `away` (for every tab and device of it).
-- ARGV[4] agent  ARGV[5] presence
-- Returns {load, max_chats}, or {-1} if the agent has no seat (no socket ever connected).
-- include: board.lua
local seat = seat_key(ARGV[4])
if redis.call("EXISTS", seat) == 0 then
  return {-1}
end
redis.call("HSET", seat, "presence", ARGV[5])
reindex(ARGV[4])
ring()
local state = redis.call("HMGET", seat, "load", "max")
return {tonumber(state[1]) or 0, tonumber(state[2]) or 0}
