-- Agents whose grace ran out while offline: their conversations go back to the head of their
-- queues (ahead of everyone of the same priority), with a fresh max_wait.
-- ARGV[4] at most this many agents
-- Returns {agent, cid, queue, …}.
-- include: board.lua
local out = {}
for _, agent in ipairs(redis.call("ZRANGEBYSCORE", P .. "grace", "-inf", NOW, "LIMIT", 0,
    tonumber(ARGV[4]))) do
  redis.call("ZREM", P .. "grace", agent)
  if redis.call("HGET", seat_key(agent), "online") ~= "1" then
    for _, cid in ipairs(redis.call("SMEMBERS", P .. "held:" .. agent)) do
      unhold(cid)
      local entry = redis.call("HGET", P .. "entry", cid)
      local fields = entry and cjson.decode(entry) or {queue = "support", priority = 0,
        max_wait_ms = 600000}
      local band = 99 - math.max(0, math.min(99, tonumber(fields["priority"]) or 0))
      wait(cid, fields["queue"], band * BAND, entry or cjson.encode(fields),
        NOW + (tonumber(fields["max_wait_ms"]) or 600000))
      out[#out + 1] = agent
      out[#out + 1] = cid
      out[#out + 1] = fields["queue"]
    end
  end
end
ring()
return out
