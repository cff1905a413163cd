-- Ring a waiting conversation's doorbell with its place in line, if it still waits: with
-- sharded pub/sub routing's steps cannot reach the conversation's channel (tell_position in
-- routing/lua/lib/board.lua), so this step, on the conversation's slot, rings it; a `queued`
-- place cannot follow the status change that ended the wait, as that one rings here too.
-- KEYS[1] the record  ARGV[1] the conversation's channel  ARGV[2] the status frame (JSON)
-- Returns 1 when rung, else 0.
-- include: conversation.lua
if redis.call("HGET", KEYS[1], "status") ~= "queued" then
  return 0
end
redis.call(PUBLISH, ARGV[1], ARGV[2])
return 1
