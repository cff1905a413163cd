-- An agent's socket is live (it connected, or answered the server's ping): keep its seat, with
-- the account's name, capacity and queues, until ARGV[6] (unix ms). Ends a grace period.
-- ARGV[4] agent  ARGV[5] socket id  ARGV[6] expiry ms  ARGV[7] name  ARGV[8] max_chats
-- ARGV[9] queues, comma-separated  ARGV[10] role
-- Returns {presence, load, max_chats, 1 if it came back within its grace period else 0}.
-- include: board.lua
local agent = ARGV[4]
local seat = seat_key(agent)
local before = redis.call("HGET", seat, "queues")
if before and before ~= ARGV[9] then
  unindex(agent, queues_of(before))  -- the account's queues changed
end
redis.call("HSET", seat, "name", ARGV[7], "max", ARGV[8], "queues", ARGV[9], "role", ARGV[10],
  "online", "1")
redis.call("HSETNX", seat, "presence", "away")
redis.call("HSETNX", seat, "load", 0)
redis.call("ZADD", P .. "sockets:" .. agent, ARGV[6], ARGV[5])
redis.call("ZADD", P .. "sockets", ARGV[6], agent .. "|" .. ARGV[5])
redis.call("SADD", P .. "seats", agent)
local graced = redis.call("ZREM", P .. "grace", agent)
reindex(agent)
ring()
local state = redis.call("HMGET", seat, "presence", "load", "max")
return {state[1], tonumber(state[2]), tonumber(state[3]), graced}
