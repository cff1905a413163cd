-- An assignment's conversation record is updated: ring the agent's sockets, and take it off the
-- list of assignments to announce (one a dead worker left is announced by the sweeps).
-- ARGV[4] conversation  ARGV[5] the assignment's time (ms) as `unannounced` has it
-- ARGV[6] the agent
-- Returns 1 if it was still to announce.
-- include: board.lua
local cid = ARGV[4]
if redis.call("HGET", HOLDER, cid) == ARGV[6] then
  ring_agent(ARGV[6], '{"type":"ring","event":"assigned","conversation":"' .. cid .. '"}')
end
if redis.call("ZSCORE", P .. "unannounced", cid) == ARGV[5] then
  return redis.call("ZREM", P .. "unannounced", cid)
end
return 0
