-- An assignment's conversation record is updated and its agent told: no repair needed.
-- ARGV[4] conversation  ARGV[5] the assignment's time (ms) as `unannounced` has it
-- Returns 1 if it was still to announce.
-- include: board.lua
if redis.call("ZSCORE", P .. "unannounced", ARGV[4]) == ARGV[5] then
  return redis.call("ZREM", P .. "unannounced", ARGV[4])
end
return 0
