-- Note a conversation that escalated but never reached a person, for its queue's "Missed" list.
-- ARGV[4] conversation  ARGV[5] queue  ARGV[6] the entry (JSON: why, at_ms, visitor, preview)
-- include: board.lua
local missed = P .. "missed:" .. ARGV[5]
redis.call("ZADD", missed, NOW, ARGV[4])
redis.call("HSET", P .. "missed_info", ARGV[4], ARGV[6])
-- the oldest beyond the kept number are forgotten with their entries
local MISSED_KEEP = 1000
local old = redis.call("ZRANGE", missed, 0, -(MISSED_KEEP + 1))
if #old > 0 then
  redis.call("ZREM", missed, unpack(old))
  redis.call("HDEL", P .. "missed_info", unpack(old))
end
queue_changed(ARGV[5])
ring()
return 1
