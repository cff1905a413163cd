-- Sweep sockets whose live-until time passed without a pong (their worker died, or the network
-- went): each is gone, as if it had closed.
-- ARGV[4] at most this many  ARGV[5] grace in ms
-- Returns the agents that went offline.
-- include: board.lua
local gone = {}
for _, member in ipairs(redis.call("ZRANGEBYSCORE", P .. "sockets", "-inf", NOW, "LIMIT", 0,
    tonumber(ARGV[4]))) do
  local split = string.find(member, "|", 1, true)
  local agent, socket = string.sub(member, 1, split - 1), string.sub(member, split + 1)
  if leave(agent, socket, tonumber(ARGV[5])) then
    gone[#gone + 1] = agent
  end
  redis.call("ZREM", P .. "sockets", member)
end
ring()
return gone
