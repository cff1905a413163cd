-- Assign waiting conversations of the queues named to free agents (an agent turned available,
-- freed a slot or came back): the longest-waiting head of any of them first.
-- ARGV[4] at most this many  ARGV[5 …] queue, strategy, queue, strategy, …
-- Returns {cid, agent, …}.
-- include: board.lua
local made = match(queue_pairs(5), tonumber(ARGV[4]))
ring()
return made
