-- Append one message to a conversation: give it the next seq, drop a repeated client id,
-- publish it, and keep the conversation alive for the retention period.
-- KEYS[1] record (hash)  KEYS[2] log (list)  KEYS[3] client ids (hash id -> seq)
-- ARGV[1] client id or ""  ARGV[2] the message as JSON without its opening "{"
-- ARGV[3] channel  ARGV[4] retention in seconds  ARGV[5] "1" to refuse a closed conversation
-- Returns {seq, 1, status} for a new message, {seq, 0, status} for a repeated id (even after
-- the close: the client only missed its ack), {0, -1} if there is no such conversation, and
-- {0, -2, "closed"} for a new message to a closed one.
local status = redis.call("HGET", KEYS[1], "status")
if not status then
  return {0, -1}
end
if ARGV[1] ~= "" then
  local seen = redis.call("HGET", KEYS[3], ARGV[1])
  if seen then
    return {tonumber(seen), 0, status}
  end
end
if ARGV[5] == "1" and status == "closed" then
  return {0, -2, status}
end
local seq = redis.call("HINCRBY", KEYS[1], "seq", 1)
local message = '{"seq":' .. seq .. ',' .. ARGV[2]
redis.call("RPUSH", KEYS[2], message)
if ARGV[1] ~= "" then
  redis.call("HSET", KEYS[3], ARGV[1], seq)
end
local ttl = tonumber(ARGV[4])
for i = 1, 3 do
  if redis.call("EXISTS", KEYS[i]) == 1 then
    redis.call("EXPIRE", KEYS[i], ttl)
  end
end
redis.call("PUBLISH", ARGV[3], message)
return {seq, 1, status}
