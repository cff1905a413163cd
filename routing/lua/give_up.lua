-- Take the conversations that waited past their queue's max_wait out of the waiting lists.
-- ARGV[4] at most this many
-- Returns their ids (each taken by one caller only). Their entries stay until release.lua:
-- the no_agents turn that follows lists them as missed from it.
-- include: board.lua
local out = {}
for _, cid in ipairs(redis.call("ZRANGEBYSCORE", P .. "deadlines", "-inf", NOW, "LIMIT", 0,
    tonumber(ARGV[4]))) do
  redis.call("ZREM", P .. "deadlines", cid)
  local entry = redis.call("HGET", P .. "entry", cid)
  if entry and redis.call("HEXISTS", HOLDER, cid) == 0 then
    local queue = cjson.decode(entry)["queue"]
    if redis.call("ZREM", waiting_key(queue), cid) == 1 then
      out[#out + 1] = cid
      queue_changed(queue)
    end
  end
end
ring()
return out
