-- Store one bot turn atomically: its messages, each with the next seq (published together), then the
-- record's new fields; and keep the conversation for the retention period. Only the holder of
-- the turn lock may (a fencing token: a worker that lost its lock mid-turn writes nothing).
-- KEYS[1] record (hash)  KEYS[2] log (list)  KEYS[3] client ids (hash)  KEYS[4] turn lock
-- ARGV[1] channel  ARGV[2] retention in seconds  ARGV[3] lock token
-- ARGV[4] n, the number of messages; ARGV[5 .. 4+n] the messages as JSON without their "{"
-- ARGV[5+n ..] field, value, field, value … for the record
-- Returns the last seq; -1 if there is no such conversation, -2 if the lock is not ours,
-- -3 if the conversation closed meanwhile (the visitor ended it).
if redis.call("EXISTS", KEYS[1]) == 0 then
  return -1
end
if redis.call("GET", KEYS[4]) ~= ARGV[3] then
  return -2
end
if redis.call("HGET", KEYS[1], "status") == "closed" then
  return -3
end
local count = tonumber(ARGV[4])
local seq = tonumber(redis.call("HGET", KEYS[1], "seq") or "0")
local stored = {}
for i = 1, count do
  seq = redis.call("HINCRBY", KEYS[1], "seq", 1)
  stored[i] = '{"seq":' .. seq .. ',' .. ARGV[4 + i]
  redis.call("RPUSH", KEYS[2], stored[i])
end
if count > 0 then
  -- one doorbell for the whole turn: compact JSON holds no raw newline, so it separates them
  redis.call("PUBLISH", ARGV[1], table.concat(stored, "\n"))
end
if #ARGV > 4 + count then
  redis.call("HSET", KEYS[1], unpack(ARGV, 5 + count))
end
local ttl = tonumber(ARGV[2])
for i = 1, 3 do
  if redis.call("EXISTS", KEYS[i]) == 1 then
    redis.call("EXPIRE", KEYS[i], ttl)
  end
end
return seq
