-- An agent takes a waiting conversation itself (manual pick-up; any queue of its own).
-- ARGV[4] conversation  ARGV[5] agent  ARGV[6] "1": from any queue (a lead), not only its own
-- Returns {1, the agent's name, the assignment's time} when taken, {-1} when someone holds it
-- already, {-2} when it is not waiting, {-3} when
-- the agent may not take it now (away, full, or not one of its queues).
-- include: board.lua
local cid, agent = ARGV[4], ARGV[5]
if redis.call("HEXISTS", HOLDER, cid) == 1 then
  return {-1}
end
local entry = redis.call("HGET", P .. "entry", cid)
if not entry then
  return {-2}
end
local queue = cjson.decode(entry)["queue"]
if not redis.call("ZSCORE", waiting_key(queue), cid) then
  return {-2}
end
if not redis.call("ZSCORE", P .. "free:" .. queue, agent) then
  local seat = redis.call("HMGET", seat_key(agent), "online", "presence", "load", "max")
  local free = seat[1] == "1" and seat[2] == "available" and
    (tonumber(seat[3]) or 0) < (tonumber(seat[4]) or 0)
  if ARGV[6] ~= "1" or not free then
    return {-3}
  end
end
assign(cid, agent, queue)
ring()
return {1, redis.call("HGET", seat_key(agent), "name") or agent, tostring(NOW)}
