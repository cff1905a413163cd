-- An agent's socket closed (ARGV[5] its id): offline at once if it was the agent's last one,
-- and what it holds kept for ARGV[6] ms of grace.
-- ARGV[4] agent  ARGV[5] socket id  ARGV[6] grace in ms
-- Returns 1 if the agent went offline, else 0.
-- include: board.lua
local offline = leave(ARGV[4], ARGV[5], tonumber(ARGV[6]))
ring()
return offline and 1 or 0
