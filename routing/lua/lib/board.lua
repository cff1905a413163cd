-- The routing board's helpers, shared by the scripts of routing/lua/ ("-- include: board.lua").
-- Every script gets ARGV[1] the board's key prefix ("<prefix>{routing}:"), ARGV[2] the hub's
-- channel prefix and ARGV[3] the time in unix milliseconds; KEYS[1] is the board's holder hash.
-- All board keys carry the {routing} hash tag: one Redis Cluster slot, so one script may reach
-- every one of them, including the per-agent and per-queue keys it names from the prefix
-- (routing/board.py lists the layout).
-- ARGV[2] ends where a topic begins: with sharded pub/sub (a Redis Cluster) it carries the
-- {routing} tag too (chat/hub.py, Channels), as a script may only SPUBLISH on its keys' slot.
local P, CHANNELS, NOW = ARGV[1], ARGV[2], tonumber(ARGV[3])
-- The doorbell's command: "SPUBLISH" with sharded pub/sub (chat/scripts.py).
local PUBLISH = "PUBLISH"
local SHARDED = PUBLISH == "SPUBLISH"
local HOLDER = KEYS[1]  -- hash: conversation -> the agent holding it
local BAND = 1e13  -- a priority band in waiting scores: more than any unix time in ms
local TAKEN_KEEP = 50  -- recent assignments kept per queue, for the wait estimate
local RECENT_MS = 30 * 60 * 1000  -- assignments this recent measure a queue's service rate
local CONVERSATION = "conv:"  -- a conversation's topic, before its id (chat/conversations.py TOPIC)
local HAD_KEEP = 1000  -- conversations remembered per agent, for `history`

local function seat_key(agent) return P .. "seat:" .. agent end
local function waiting_key(queue) return P .. "waiting:" .. queue end

local changed_queues = {}  -- queues whose waiting list this script changed
local team_changed = false

local function queue_changed(queue)
  changed_queues[queue] = true
  team_changed = true
end

-- Ring the doorbells of what changed (queue lists, the leads' team view), once per script.
local function ring()
  for queue in pairs(changed_queues) do
    redis.call("SADD", P .. "dirty", queue)
    redis.call(PUBLISH, CHANNELS .. "queue:" .. queue, '{"type":"queue_changed","queue":"'
      .. queue .. '"}')
  end
  if team_changed then
    redis.call(PUBLISH, CHANNELS .. "team", '{"type":"team_changed"}')
  end
end

local function queues_of(csv)
  local queues = {}
  for queue in string.gmatch(csv or "", "[^,]+") do
    queues[#queues + 1] = queue
  end
  return queues
end

-- Take an agent out of the indexes of `queues`.
local function unindex(agent, queues)
  for _, queue in ipairs(queues) do
    redis.call("SREM", P .. "present:" .. queue, agent)
    redis.call("ZREM", P .. "free:" .. queue, agent)
    redis.call("ZREM", P .. "idle:" .. queue, agent)
  end
end

-- Put an agent in or out of each of its queues' indexes, as its seat says: `present` (online
-- and available, busy or not), `free` (also below max_chats; by load, then idle time) and `idle`
-- (free agents by the time of their last assignment).
local function reindex(agent)
  local seat = redis.call("HMGET", seat_key(agent), "online", "presence", "load", "max", "queues",
    "last")
  local present = seat[1] == "1" and seat[2] == "available"
  local load, max = tonumber(seat[3] or "0") or 0, tonumber(seat[4] or "0") or 0
  local last = tonumber(seat[6] or "0") or 0
  local free = present and load < max
  for _, queue in ipairs(queues_of(seat[5])) do
    if present then
      redis.call("SADD", P .. "present:" .. queue, agent)
    else
      redis.call("SREM", P .. "present:" .. queue, agent)
    end
    if free then
      redis.call("ZADD", P .. "free:" .. queue, load * BAND + last, agent)
      redis.call("ZADD", P .. "idle:" .. queue, last, agent)
    else
      redis.call("ZREM", P .. "free:" .. queue, agent)
      redis.call("ZREM", P .. "idle:" .. queue, agent)
    end
  end
  team_changed = true
end

-- Give a waiting conversation to an agent: the one write that makes a holder. The caller has
-- checked that the agent is free for the queue.
local function assign(cid, agent, queue)
  redis.call("ZREM", waiting_key(queue), cid)
  redis.call("ZREM", P .. "deadlines", cid)
  redis.call("HSET", HOLDER, cid, agent)
  redis.call("SADD", P .. "held:" .. agent, cid)
  redis.call("HINCRBY", seat_key(agent), "load", 1)
  redis.call("HSET", seat_key(agent), "last", NOW)
  reindex(agent)
  local taken = P .. "taken:" .. queue
  redis.call("ZADD", taken, NOW, cid .. "@" .. NOW)
  redis.call("ZREMRANGEBYRANK", taken, 0, -(TAKEN_KEEP + 1))
  local had = P .. "had:" .. agent
  redis.call("ZADD", had, NOW, cid)
  redis.call("ZREMRANGEBYRANK", had, 0, -(HAD_KEEP + 1))
  redis.call("ZADD", P .. "unannounced", NOW, cid)
  queue_changed(queue)
end

-- Assign waiting conversations of `queues` ({name, strategy} pairs; manual ones are skipped)
-- to free agents, the longest-waiting head of any of them first, at most `limit`. Returns
-- {cid, agent, the agent's name, the assignment's time (ms), …}: what announcing needs.
local function match(queues, limit)
  local out = {}
  while #out < 2 * limit do
    local best, best_score, best_agent
    for _, pair in ipairs(queues) do
      local queue, strategy = pair[1], pair[2]
      if strategy ~= "manual" then
        local head = redis.call("ZRANGE", waiting_key(queue), 0, 0, "WITHSCORES")
        if #head > 0 and (best_score == nil or tonumber(head[2]) < best_score) then
          local index = strategy == "least_busy" and "free:" or "idle:"
          local pick = redis.call("ZRANGE", P .. index .. queue, 0, 0)
          if #pick > 0 then
            best, best_score, best_agent = {head[1], queue}, tonumber(head[2]), pick[1]
          end
        end
      end
    end
    if best == nil then
      break
    end
    assign(best[1], best_agent, best[2])
    out[#out + 1] = best[1]
    out[#out + 1] = best_agent
    out[#out + 1] = redis.call("HGET", seat_key(best_agent), "name") or best_agent
    out[#out + 1] = tostring(NOW)
  end
  return out
end

-- The queues of an agent's seat with their strategies, from ARGV[first …]: the default strategy,
-- then queue, strategy pairs for the queues QUEUES_FILE names.
local function strategies_of(agent, first)
  local named = {}
  for i = first + 1, #ARGV - 1, 2 do
    named[ARGV[i]] = ARGV[i + 1]
  end
  local pairs_ = {}
  for _, queue in ipairs(queues_of(redis.call("HGET", seat_key(agent), "queues"))) do
    pairs_[#pairs_ + 1] = {queue, named[queue] or ARGV[first]}
  end
  return pairs_
end

-- Ring an agent's sockets (routing/router.py, AGENT_TOPIC) with a JSON frame.
local function ring_agent(agent, frame)
  redis.call(PUBLISH, CHANNELS .. "agent:" .. agent, frame)
end

-- The frame that tells an agent a conversation is no longer its own.
local function unassigned(cid, reason)
  return '{"type":"unassigned","conversation":"' .. cid .. '","reason":"' .. reason .. '"}'
end

-- Read {name, strategy} pairs from ARGV[first …].
local function queue_pairs(first)
  local pairs_ = {}
  for i = first, #ARGV - 1, 2 do
    pairs_[#pairs_ + 1] = {ARGV[i], ARGV[i + 1]}
  end
  return pairs_
end

-- Free the conversation's holder, if any: returns the agent that held it, or false.
local function unhold(cid)
  local agent = redis.call("HGET", HOLDER, cid)
  if not agent then
    return false
  end
  redis.call("HDEL", HOLDER, cid)
  redis.call("ZREM", P .. "unannounced", cid)
  redis.call("SREM", P .. "held:" .. agent, cid)
  if tonumber(redis.call("HINCRBY", seat_key(agent), "load", -1)) < 0 then
    redis.call("HSET", seat_key(agent), "load", 0)
  end
  if redis.call("SCARD", P .. "held:" .. agent) == 0 then
    redis.call("ZREM", P .. "grace", agent)
  end
  reindex(agent)
  return agent
end

-- Put a conversation in its queue's waiting list with `score`; its entry holds how.
local function wait(cid, queue, score, entry, deadline)
  redis.call("ZADD", waiting_key(queue), score, cid)
  redis.call("HSET", P .. "entry", cid, entry)
  redis.call("ZADD", P .. "deadlines", deadline, cid)
  redis.call("SADD", P .. "queues", queue)
  queue_changed(queue)
end

-- An agent's socket is gone: offline when it was the last one, and its conversations held for
-- the grace period. Returns true if the agent went offline.
local function leave(agent, socket, grace_ms)
  redis.call("ZREM", P .. "sockets", agent .. "|" .. socket)
  redis.call("ZREM", P .. "sockets:" .. agent, socket)
  if redis.call("ZCARD", P .. "sockets:" .. agent) > 0 then
    return false
  end
  if redis.call("HGET", seat_key(agent), "online") ~= "1" then
    return false
  end
  redis.call("HSET", seat_key(agent), "online", "")
  reindex(agent)
  if redis.call("SCARD", P .. "held:" .. agent) > 0 then
    redis.call("ZADD", P .. "grace", NOW + grace_ms, agent)
  end
  return true
end

-- Seconds until `position` is served at the queue's recent service rate (assignments a second
-- over RECENT_MS, counted from the oldest of them to now), or nil with fewer than two.
local function wait_estimate(queue, position)
  local taken = P .. "taken:" .. queue
  local count = redis.call("ZCOUNT", taken, NOW - RECENT_MS, "+inf")
  if count < 2 then
    return nil
  end
  local oldest = redis.call("ZRANGEBYSCORE", taken, NOW - RECENT_MS, "+inf", "WITHSCORES",
    "LIMIT", 0, 1)
  local span_s = math.max((NOW - tonumber(oldest[2])) / 1000, 1)
  return math.floor(position * span_s / count + 0.5)
end

-- Places told by this script with sharded pub/sub: cid, frame, … (see tell_position).
local TOLD = {}

-- Tell a waiting conversation's sockets its place in line, in the same step that knows it (so
-- no `queued` status can follow the `assigned` of a later step). With sharded pub/sub the
-- conversation's channel is in its own slot, out of this script's reach: the place goes back
-- to the caller (told()), which rings it in a step on the conversation's slot that checks it
-- still waits (chat/lua/tell_place.lua), so the same holds.
local function tell_position(cid, queue, position)
  local wait_s = wait_estimate(queue, position)
  local frame = cjson.encode({
    type = "status", conversation = cid, status = "queued", queue = queue,
    position = position, wait_s = wait_s == nil and cjson.null or wait_s})
  if SHARDED then
    TOLD[#TOLD + 1] = cid
    TOLD[#TOLD + 1] = frame
  else
    redis.call(PUBLISH, CHANNELS .. CONVERSATION .. cid, frame)
  end
end

-- The reply of a script that may tell places: as it is, or with sharded pub/sub {reply, the
-- places told} (routing/board.py rings them).
local function told(reply)
  if SHARDED then
    return {reply, TOLD}
  end
  return reply
end

-- Who holds a conversation that `from` may hand on ("" for a lead: whoever holds it): the
-- holder, or nil and the refusal, -1 when nobody holds it, -2 when another agent does.
local function handed_on_by(cid, from)
  local holder = redis.call("HGET", HOLDER, cid)
  if not holder then
    return nil, -1
  end
  if from ~= "" and holder ~= from then
    return nil, -2
  end
  return holder
end

-- Assign what waits in `queue`, then tell `cid` its place if it still waits there; returns
-- {its position or 0, the assignments …} (the scripts' common ending; rings the doorbells).
local function serve_and_place(cid, queue, strategy, limit)
  local made = match({{queue, strategy}}, limit)
  local rank = redis.call("ZRANK", waiting_key(queue), cid)
  if rank then
    tell_position(cid, queue, rank + 1)
  end
  ring()
  return {rank and rank + 1 or 0, unpack(made)}
end
