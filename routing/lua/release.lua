-- A conversation left routing (it closed, or went back to the bot): out of its waiting list, its
-- holder's slot freed, told (`unassigned`) and given what waits in its queues, in one step.
-- Idempotent.
-- ARGV[4] conversation  ARGV[5] why, for the holder's `unassigned` (closed, transferred)
-- ARGV[6] at most this many assignments  ARGV[7] the agent that must hold it, or "" (anyone:
-- the conversation closed, or a lead hands it on)  ARGV[8] the default strategy, then queue,
-- strategy pairs for the queues QUEUES_FILE names
-- Returns {the agent that held it or "", 1 if it was waiting else 0, its entry or "",
-- assignments as match() gives them …}, or {-1} when ARGV[7] does not hold it (any more).
-- include: board.lua
local cid = ARGV[4]
if ARGV[7] ~= "" and redis.call("HGET", HOLDER, cid) ~= ARGV[7] then
  return {-1}
end
local was_waiting = 0
local entry = redis.call("HGET", P .. "entry", cid)
if entry then
  local queue = cjson.decode(entry)["queue"]
  if redis.call("ZREM", waiting_key(queue), cid) == 1 then
    was_waiting = 1
    queue_changed(queue)
  end
  redis.call("HDEL", P .. "entry", cid)
end
redis.call("ZREM", P .. "deadlines", cid)
local agent = unhold(cid)
local made = {}
if agent then
  ring_agent(agent, unassigned(cid, ARGV[5]))
  made = match(strategies_of(agent, 8), tonumber(ARGV[6]))
end
ring()
return {agent or "", was_waiting, entry or "", unpack(made)}
