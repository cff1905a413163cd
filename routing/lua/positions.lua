-- Tell the conversations waiting in a queue at ranks ARGV[5] .. ARGV[6] (from 0) their place in
-- line and wait, each in the step that knows it (see tell_position in board.lua).
-- ARGV[4] queue  ARGV[5] first rank  ARGV[6] last rank
-- Returns how many were told.
-- (With sharded pub/sub, with the places told: see told() in board.lua.)
-- include: board.lua
local queue, first = ARGV[4], tonumber(ARGV[5])
local waiting = redis.call("ZRANGE", waiting_key(queue), first, tonumber(ARGV[6]))
for i, cid in ipairs(waiting) do
  tell_position(cid, queue, first + i)
end
return told(#waiting)
