-- Hand a held conversation back to a queue (the same or another), which must have an agent
-- present; assign what can be assigned.
-- ARGV[4] conversation  ARGV[5] the agent handing it on, or "" (a lead)  ARGV[6] queue
-- ARGV[7] strategy  ARGV[8] waiting score  ARGV[9] entry (JSON)  ARGV[10] deadline ms
-- ARGV[11] at most this many assignments
-- Returns {1, former holder, position (0 once assigned), assignments as match() gives them},
-- or {-1} not held,
-- {-2} held by another, {-3} nobody of that queue is present.
-- (With sharded pub/sub, with the places told: see told() in board.lua.)
-- include: board.lua
local cid, from, queue = ARGV[4], ARGV[5], ARGV[6]
local holder, refused = handed_on_by(cid, from)
if not holder then
  return told({refused})
end
if redis.call("SCARD", P .. "present:" .. queue) == 0 then
  return told({-3})
end
unhold(cid)
ring_agent(holder, unassigned(cid, "transferred"))
wait(cid, queue, ARGV[8], ARGV[9], ARGV[10])
return told({1, holder, unpack(serve_and_place(cid, queue, ARGV[7], tonumber(ARGV[11])))})
