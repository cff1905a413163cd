"""What the cluster needs of the key layout: each atomic step's keys in one slot, and the
conversation store's steps working through redis-py's cluster client."""

from __future__ import annotations

from redis.crc import key_slot

from chat.conversations import Conversations
from routing.board import Board


def test_a_conversations_keys_share_one_slot_and_conversations_spread(cluster):
    conversations = Conversations(cluster, "concierge:", retention_s=3600)
    slots = set()
    for cid in (f"c_{n:04d}" for n in range(30)):
        keys = conversations._keys(cid)
        assert len({key_slot(key.encode()) for key in keys}) == 1, keys
        slots.add(key_slot(keys[0].encode()))
    nodes = {cluster.nodes_manager.get_node_from_slot(slot).name for slot in slots}
    assert len(nodes) == 3  # thirty conversations land on every master


def test_routing_keys_share_one_slot_whatever_the_prefix(cluster):
    slots = {key_slot(Board(cluster, prefix).base.encode()) for prefix in ("concierge:", "acme:")}
    assert len(slots) == 1


def test_a_conversation_is_stored_appended_and_its_turn_stored_on_a_cluster(cluster):
    conversations = Conversations(cluster, "concierge:", retention_s=3600)
    began = conversations.create_and_begin("default", {"verified": False}, "token-1")
    cid = began.conversation.id
    conversations.store_turn(cid, "token-1", [{"type": "message", "from": "bot", "text": "Hi",
                                               "conversation": cid, "id": "m_1"}], {},
                             status="bot", release=True)
    appended = conversations.append_and_begin(
        cid, {"type": "message", "from": "visitor", "text": "hello", "conversation": cid,
              "id": "v_1"}, "v_1", "token-2")
    assert appended.seq == 2 and appended.began is not None
    assert [m["text"] for m in map(__import__("json").loads, cluster.lrange(
        conversations._keys(cid)[1], 0, -1))] == ["Hi", "hello"]


def test_closing_a_verified_visitors_conversation_forgets_its_index_on_a_cluster(cluster):
    from chat import lifecycle

    conversations = Conversations(cluster, "concierge:", retention_s=3600)
    visitor = {"verified": True, "user_id": "u-42"}
    cid = conversations.create_and_begin("default", visitor, "token-1").conversation.id
    assert conversations.verified_conversation("u-42") == cid
    conversations.store_turn(cid, "token-1", [], {}, status="bot", release=True)
    assert conversations.change_status(cid, lifecycle.closing(cid, "visitor", visitor),
                                       ("bot",))
    assert conversations.verified_conversation("u-42") is None
    assert conversations.past_of("u-42") == [cid]


def test_shared_round_trips_go_to_each_node_once_and_follow_a_moved_slot(cluster):
    import gevent

    from chat.coalesce import Coalescer

    script = "redis.call('INCR', KEYS[1]) return ARGV[1]"
    shared = Coalescer(cluster).wrap(cluster.register_script(script))
    keys = [f"{{c_{n:03d}}}:n" for n in range(60)]  # conversations of every master
    callers = [gevent.spawn(shared, keys=[key], args=[key]) for key in keys]
    gevent.joinall(callers, timeout=10, raise_error=True)
    assert [caller.value for caller in callers] == keys  # each its own reply, from its node
    assert all(cluster.get(key) == "1" for key in keys)

    # A client whose map of the slots is wrong (a slot moved after it looked) is told MOVED:
    # its calls go again, where the slot is now.
    key = keys[0]
    owner = cluster.nodes_manager.get_node_from_slot(cluster.keyslot(key))
    other = next(node for node in cluster.get_primaries() if node.name != owner.name)
    cluster.nodes_manager.slots_cache[cluster.keyslot(key)] = [other]
    assert shared(keys=[key], args=["again"]) == "again"
    assert cluster.get(key) == "2"


def test_the_hub_hears_conversations_stored_on_every_node(redis_cluster):
    """Classic pub/sub on a cluster: a publish on any master reaches the hub's one connection
    (to one node): what the cluster's bus costs is for sharded pub/sub to save."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    result = subprocess.run([sys.executable, "-m", "tests.support.hub_cluster_probe",
                             redis_cluster], cwd=Path(__file__).resolve().parents[2],
                            capture_output=True, text=True, timeout=60, check=True)
    probe = json.loads(result.stdout.strip().splitlines()[-1])
    assert probe["subscribed"] and probe["nodes"] == 3
    assert (probe["heard"], probe["missed"]) == (40, [])  # forty: all three masters hold some
