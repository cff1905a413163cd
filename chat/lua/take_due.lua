-- Take the deadlines that have passed, at most ARGV[2] of them, in one step: a deadline armed
-- again meanwhile (a visitor who just spoke) is in the future and stays.
-- KEYS[1] the deadlines (sorted set)  ARGV[1] now (unix seconds)  ARGV[2] batch size
local due = redis.call("ZRANGEBYSCORE", KEYS[1], "-inf", ARGV[1], "LIMIT", 0, ARGV[2])
if #due > 0 then
  redis.call("ZREM", KEYS[1], unpack(due))
end
return due
