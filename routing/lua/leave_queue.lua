-- Take a conversation out of its queue's waiting list, only if it is still waiting (not
-- assigned meanwhile): the visitor left the queue.
-- ARGV[4] conversation
-- Returns 1 if it was waiting, else 0.
-- include: board.lua
local cid = ARGV[4]
local entry = redis.call("HGET", P .. "entry", cid)
if not entry or redis.call("HEXISTS", HOLDER, cid) == 1 then
  return 0
end
local queue = cjson.decode(entry)["queue"]
local removed = redis.call("ZREM", waiting_key(queue), cid)
redis.call("ZREM", P .. "deadlines", cid)  -- the entry stays until release.lua (see give_up.lua)
queue_changed(queue)
ring()
return removed
