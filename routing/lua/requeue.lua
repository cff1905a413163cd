-- Agents whose grace ran out while offline give back what they held. Nothing is put in a
-- waiting list here: each conversation's record must say `queued` first (and its visitor be
-- told), and then the hand-over queues it at the head of its queue (routing/sweeps.py), so no
-- other agent can be assigned it before its record has left the lost agent.
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
      out[#out + 1] = agent
      out[#out + 1] = cid
      out[#out + 1] = entry and cjson.decode(entry)["queue"] or ""
    end
  end
end
ring()
return out
