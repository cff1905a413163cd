-- Helpers shared by the conversation scripts that include this file ("-- include: …" lines are
-- replaced by it when the scripts are registered: Redis 6.2 has no Functions to share code).
-- Each script's caller passes the conversation's keys; all of them carry its hash tag, and so
-- does its channel (chat/hub.py, Channels): with sharded pub/sub a script may only SPUBLISH on
-- a channel of its keys' slot.

-- The doorbell's command: "SPUBLISH" with sharded pub/sub (a Redis Cluster; chat/scripts.py).
local PUBLISH = "PUBLISH"

-- Keep a conversation's record, log and client ids for `ttl` more seconds.
local function keep_alive(record, log, ids, ttl)
  for _, key in ipairs({record, log, ids}) do
    if redis.call("EXISTS", key) == 1 then
      redis.call("EXPIRE", key, ttl)
    end
  end
end

-- Whether a message may be appended: the conversation exists, the client id is new (or ""),
-- the conversation is open when `open_only` is "1", and under the cap. Returns nil and the
-- status when it may, else the script's reply: {0, -1} (no such conversation), {seq, 0,
-- status} (a repeated id: its first seq), {0, -2, status} (closed), {0, -3, status} (full).
local function refuse_append(record, ids, client_id, open_only, max_messages)
  local status = redis.call("HGET", record, "status")
  if not status then
    return {0, -1}
  end
  if client_id ~= "" then
    local seen = redis.call("HGET", ids, client_id)
    if seen then
      return {tonumber(seen), 0, status}
    end
  end
  if open_only == "1" and status == "closed" then
    return {0, -2, status}
  end
  if tonumber(redis.call("HGET", record, "seq") or "0") >= tonumber(max_messages) then
    return {0, -3, status}
  end
  return nil, status
end

-- Store one message (JSON without its "{") with the next seq, under its client id if it has
-- one. Returns its seq and the message as stored (not yet published).
local function store_message(record, log, ids, client_id, body)
  local seq = redis.call("HINCRBY", record, "seq", 1)
  local message = '{"seq":' .. seq .. ',' .. body
  redis.call("RPUSH", log, message)
  if client_id ~= "" then
    redis.call("HSET", ids, client_id, seq)
  end
  return seq, message
end

-- Take the turn lock with `token`; if we got it, return {record as a flat list, the messages
-- after bot_seq}, else false.
local function take_turn(lock, record, log, token, ttl_ms)
  if not redis.call("SET", lock, token, "NX", "PX", ttl_ms) then
    return false
  end
  local bot_seq = tonumber(redis.call("HGET", record, "bot_seq") or "0") or 0
  return {redis.call("HGETALL", record), redis.call("LRANGE", log, bot_seq, -1)}
end

-- Ring the doorbell for a stored message (seq, as stored) and, when `token` is given and the
-- conversation is with the bot, take the turn lock if it is free: append.lua's reply, with the
-- record and the unseen messages when it took the lock.
local function ring_and_begin(keys, channel, seq, message, status, token, ttl_ms)
  redis.call(PUBLISH, channel, message)
  if token ~= "" and status == "bot" then
    local began = take_turn(keys[4], keys[1], keys[2], token, ttl_ms)
    if began then
      return {seq, 1, status, began[1], began[2]}
    end
  end
  return {seq, 1, status}
end

-- Append ARGV[first .. last] (messages as JSON without their "{") to the log, each with the
-- next seq, and ring the doorbell once for all of them (compact JSON holds no raw newline, so
-- it separates them), after `before` (messages stored already, or nil). Returns the last seq.
local function append_all(record, log, channel, argv, first, last, before)
  local seq = tonumber(redis.call("HGET", record, "seq") or "0")
  local stored = before or {}
  for i = first, last do
    seq = redis.call("HINCRBY", record, "seq", 1)
    stored[#stored + 1] = '{"seq":' .. seq .. ',' .. argv[i]
    redis.call("RPUSH", log, stored[#stored])
  end
  if #stored > 0 then
    redis.call(PUBLISH, channel, table.concat(stored, "\n"))
  end
  return seq
end

-- 1 if the conversation is with the bot and a visitor message after its bot_seq waits for its
-- answer (a worker that found the lock taken left it to the holder), else 0.
local function unanswered(record, log)
  local status, bot_seq = unpack(redis.call("HMGET", record, "status", "bot_seq"))
  if status ~= "bot" then
    return 0
  end
  bot_seq = tonumber(bot_seq or "0") or 0
  for _, message in ipairs(redis.call("LRANGE", log, bot_seq, -1)) do
    -- frames are stored compact ({"seq":…,"from":"visitor",…}); quotes inside texts are escaped
    if string.find(message, '"from":"visitor"', 1, true) then
      return 1
    end
  end
  return 0
end
