-- Hand a held conversation to another agent, who must be online, available and below its
-- max_chats.
-- ARGV[4] conversation  ARGV[5] the agent handing it on, or "" (a lead: whoever holds it)
-- ARGV[6] the agent receiving it
-- Returns {1, former holder, the receiver's name, the assignment's time}, or {-1} not held,
-- {-2} held by another, {-3} the receiver cannot take it now, {-4} it holds it already.
-- include: board.lua
local cid, from, to = ARGV[4], ARGV[5], ARGV[6]
local holder, refused = handed_on_by(cid, from)
if not holder then
  return {refused}
end
if holder == to then
  return {-4}
end
local seat = redis.call("HMGET", seat_key(to), "online", "presence", "load", "max")
if seat[1] ~= "1" or seat[2] ~= "available" or
    (tonumber(seat[3]) or 0) >= (tonumber(seat[4]) or 0) then
  return {-3}
end
unhold(cid)
ring_agent(holder, unassigned(cid, "transferred"))
local entry = redis.call("HGET", P .. "entry", cid)
local queue = entry and cjson.decode(entry)["queue"] or "transfer"
assign(cid, to, queue)
ring()
return {1, holder, redis.call("HGET", seat_key(to), "name") or to, tostring(NOW)}
