-- Put an escalated conversation in its queue and assign what can be assigned, in one step.
-- Idempotent: a conversation already waiting is not added twice, one already held is left.
-- ARGV[4] conversation  ARGV[5] queue  ARGV[6] strategy  ARGV[7] waiting score
-- ARGV[8] entry (JSON)  ARGV[9] max_wait deadline ms  ARGV[10] "1": only if an agent of the
-- queue is present  ARGV[11] at most this many assignments
-- Returns {0} when nobody of the queue is present, {2} when it is held already, else
-- {1, its position (0 once assigned), the assignments made, as match() gives them}.
-- (With sharded pub/sub, with the places told: see told() in board.lua.)
-- include: board.lua
local cid, queue = ARGV[4], ARGV[5]
if redis.call("HEXISTS", HOLDER, cid) == 1 then
  return told({2})
end
if not redis.call("ZSCORE", waiting_key(queue), cid) then
  -- one already waiting (back from an agent, or passed on) stays, present agents or not
  if ARGV[10] == "1" and redis.call("SCARD", P .. "present:" .. queue) == 0 then
    return told({0})
  end
  wait(cid, queue, ARGV[7], ARGV[8], ARGV[9])
end
return told({1, unpack(serve_and_place(cid, queue, ARGV[6], tonumber(ARGV[11])))})
