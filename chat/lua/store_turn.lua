-- Store one bot turn atomically: its messages, each with the next seq and published, then the
-- record's new fields; and keep the conversation for the retention period.
-- KEYS[1] record (hash)  KEYS[2] log (list)  KEYS[3] client ids (hash)
-- ARGV[1] channel  ARGV[2] retention in seconds  ARGV[3] n, the number of messages
-- ARGV[4 .. 3+n] the messages as JSON without their opening "{"
-- ARGV[4+n ..] field, value, field, value … for the record
-- Returns the last seq, or -1 if there is no such conversation.
if redis.call("EXISTS", KEYS[1]) == 0 then
  return -1
end
local count = tonumber(ARGV[3])
local seq = tonumber(redis.call("HGET", KEYS[1], "seq") or "0")
for i = 1, count do
  seq = redis.call("HINCRBY", KEYS[1], "seq", 1)
  local message = '{"seq":' .. seq .. ',' .. ARGV[3 + i]
  redis.call("RPUSH", KEYS[2], message)
  redis.call("PUBLISH", ARGV[1], message)
end
if #ARGV > 3 + count then
  redis.call("HSET", KEYS[1], unpack(ARGV, 4 + count))
end
local ttl = tonumber(ARGV[2])
for i = 1, 3 do
  if redis.call("EXISTS", KEYS[i]) == 1 then
    redis.call("EXPIRE", KEYS[i], ttl)
  end
end
return seq
