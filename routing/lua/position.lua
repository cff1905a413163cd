-- A waiting conversation's place in line and estimated wait.
-- ARGV[4] conversation  ARGV[5] queue
-- Returns {position (1 = next), wait in seconds or -1 without a basis}, or {0, -1} when it
-- does not wait in that queue.
-- include: board.lua
local rank = redis.call("ZRANK", waiting_key(ARGV[5]), ARGV[4])
if not rank then
  return {0, -1}
end
return {rank + 1, wait_estimate(ARGV[5], rank + 1) or -1}
