-- A conversation left routing (it closed, or went back to the bot): out of its waiting list,
-- its holder's load freed. Idempotent.
-- ARGV[4] conversation
-- Returns {the agent that held it or "", 1 if it was waiting else 0}.
-- include: board.lua
local cid = ARGV[4]
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
ring()
return {agent or "", was_waiting}
