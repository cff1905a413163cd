"""Sharded pub/sub on a Redis Cluster (docs/operating.md, "Redis Cluster"): each frame is
SPUBLISHed on its channel's master only, and each worker's hub SSUBSCRIBEs on a connection to
every master owning a channel it watches.

The hub runs as a worker runs it, under gevent's patched sockets, in a probe process of its own
(PROBE below) that the test drives line by line; the service itself under real gunicorn.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis as redis_lib
from redis.cluster import RedisCluster as ClusterClient

from chat import lifecycle
from chat.coalesce import Coalescer
from chat.conversations import RECORD, Conversations
from chat.hub import Channels
from routing.board import Board
from routing.router import AGENT_TOPIC, TEAM_TOPIC
from tests.cluster.test_service import cluster_server, serving_worker  # noqa: F401 - fixture
from tests.support.process import poll_until
from tests.support.redis_cluster import RedisCluster, cluster_supported
from tests.support.ws import VisitorSocket, bot_says, message_from

ROOT = Path(__file__).resolve().parents[2]
PREFIX = "probe:"
WAIT_S = 30.0  # a re-subscription after a master came back: back-off is capped at 5 s
PROBE_TIMEOUT_S = 120

# The hub in a gevent-patched process, as a worker has it. Reads one JSON command a line on
# stdin and answers one JSON line: watch a topic, wait for its n-th resync or for a frame,
# spoil the map of slots, list the links.
PROBE = r'''
from gevent import monkey
monkey.patch_all()

import json, sys, time
import gevent, gevent.event, gevent.select
from chat.hub import Channels, ShardedHub
from runtime import redis_clients

class Tab:
    def __init__(self):
        self.transport = object()
        self.frames = []
        self.resyncs = 0
        self.changed = gevent.event.Event()

    def deliver(self, frame, raw):
        self.frames.append(frame)
        self.changed.set()

    def resync_later(self):
        self.resyncs += 1
        self.changed.set()

    def has(self, seq):
        return False

    def wait(self, done, timeout):
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            self.changed.clear()
            self.changed.wait(max(0.0, deadline - time.monotonic()))
        return done()

client = redis_clients.pubsub_client(sys.argv[1])
shards = redis_clients.ClusterShards(client)
hub = ShardedHub(shards, Channels(sys.argv[2], sharded=True))
tabs = {}
while True:
    gevent.select.select([sys.stdin], [], [])  # the hub's greenlets run meanwhile
    line = sys.stdin.readline()
    if not line:
        break
    command = json.loads(line)
    do, topic = command["do"], command.get("topic")
    if do == "watch":
        tabs[topic] = Tab()
        hub.watch(topic, tabs[topic])
        answer = {"watching": topic}
    elif do == "resyncs":
        tab = tabs[topic]
        tab.wait(lambda: tab.resyncs >= command["at_least"], command["timeout"])
        answer = {"resyncs": tab.resyncs, "confirmed": hub.confirmed(topic)}
    elif do == "heard":
        tab = tabs[topic]
        tab.wait(lambda: any(f.get("text") == command["text"] for f in tab.frames),
                 command["timeout"])
        answer = {"texts": [f.get("text") for f in tab.frames]}
    elif do == "spoil_map":  # the client's map says another master owns the channel's slot
        channel = hub.channels.name(topic)
        slot = client.keyslot(channel)
        owner = shards.node_of(channel)
        other = next(n for n in client.get_primaries() if n.name != owner)
        client.nodes_manager.slots_cache[slot] = [other]
        answer = {"spoiled": other.name}
    elif do == "links":
        answer = {node: sorted(link.channels) for node, link in hub._links.items()}
    else:
        break
    print(json.dumps(answer), flush=True)
'''


class Probe:
    """The hub of a gevent worker, in a process of its own, driven line by line."""

    def __init__(self, url: str) -> None:
        """Start the probe on the cluster at `url` (REDIS_URL's form: redis+cluster://)."""
        self.process = subprocess.Popen([sys.executable, "-c", PROBE, url, PREFIX], cwd=ROOT,
                                        stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.PIPE, text=True)

    def ask(self, do: str, **fields: Any) -> Any:
        self.process.stdin.write(json.dumps({"do": do, **fields}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise AssertionError(f"the probe ended: {self.process.communicate()[1]}")
        return json.loads(line)

    def watch(self, topic: str) -> None:
        self.ask("watch", topic=topic)

    def resyncs(self, topic: str, at_least: int, timeout: float = WAIT_S) -> dict:
        return self.ask("resyncs", topic=topic, at_least=at_least, timeout=timeout)

    def heard(self, topic: str, text: str, timeout: float = WAIT_S) -> list[str]:
        return self.ask("heard", topic=topic, text=text, timeout=timeout)["texts"]

    def close(self) -> str:
        """End the probe; return what it logged (the hub's warnings)."""
        try:
            _out, logged = self.process.communicate(timeout=10)  # its stdin closed: it ends
        except subprocess.TimeoutExpired:
            self.process.kill()
            _out, logged = self.process.communicate()
        return logged


@pytest.fixture
def probe(cluster_url: str) -> Iterator[Probe]:
    hub = Probe(cluster_url)
    yield hub
    hub.close()


@pytest.fixture
def own_cluster(tmp_path: Path) -> Iterator[RedisCluster]:
    """A cluster of the test's own, for tests that kill a node or move a slot."""
    if not cluster_supported():
        pytest.skip("Redis Cluster tests need redis-server 7 or later")
    with RedisCluster(tmp_path) as cluster:
        yield cluster


CHANNELS = Channels(PREFIX, sharded=True)


def topic_on(client: ClusterClient, port: int, avoid: tuple[str, ...] = ()) -> str:
    """A conversation topic whose channel's slot the master on `port` owns."""
    for n in range(10_000):
        topic = f"conv:c_probe{n}"
        if topic not in avoid and owner(client, topic).port == port:
            return topic
    raise AssertionError(f"no conversation lands on {port}")


def owner(client: ClusterClient, topic: str) -> Any:
    return client.nodes_manager.get_node_from_slot(client.keyslot(CHANNELS.name(topic)))


def on_node(client: ClusterClient, node: Any) -> redis_lib.Redis:
    return redis_lib.Redis(host=node.host, port=node.port, decode_responses=True)


def shard_subscribers(node: redis_lib.Redis, channel: str) -> int:
    """The node's count of SSUBSCRIBEd connections to the channel (PUBSUB SHARDNUMSUB)."""
    return dict(node.pubsub_shardnumsub(channel)).get(channel, 0)


def classic_subscribers(node: redis_lib.Redis, channel: str) -> int:
    """The node's count of classic SUBSCRIBEs to the channel (PUBSUB NUMSUB)."""
    return dict(node.pubsub_numsub(channel)).get(channel, 0)


def typing(text: str) -> str:
    return json.dumps({"type": "typing", "text": text})


# --- names --------------------------------------------------------------------------------------


def test_a_channel_carries_the_hash_tag_of_the_keys_its_frames_are_stored_with(cluster):
    assert CHANNELS.name("conv:c_1") == "probe:conv:{c_1}"
    assert cluster.keyslot(CHANNELS.name("conv:c_1")) == \
        cluster.keyslot(RECORD.format(prefix=PREFIX, cid="c_1"))
    board = Board(cluster, PREFIX, CHANNELS)
    for topic in (AGENT_TOPIC.format(agent="ada"), "queue:support", TEAM_TOPIC):
        assert CHANNELS.name(topic) == f"probe:{{routing}}:{topic}"
        assert cluster.keyslot(CHANNELS.name(topic)) == cluster.keyslot(board.holder_key)
    assert board.channels + "team" == CHANNELS.name(TEAM_TOPIC)  # what the scripts name


# --- the scripts --------------------------------------------------------------------------------


class ShardListener:
    """A plain SSUBSCRIBE on the master owning a channel's slot."""

    def __init__(self, cluster: ClusterClient, channel: str) -> None:
        node = cluster.nodes_manager.get_node_from_slot(cluster.keyslot(channel))
        self.client = on_node(cluster, node)
        self.pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        self.pubsub.ssubscribe(channel)

    def next(self, wait_s: float = 5.0) -> dict:
        message = None
        deadline = time.monotonic() + wait_s
        while message is None and time.monotonic() < deadline:
            message = self.pubsub.get_sharded_message(timeout=0.5)
        assert message is not None, "nothing was published on the shard"
        return message

    def close(self) -> None:
        self.pubsub.close()
        self.client.close()


def test_the_conversation_scripts_spublish_on_the_conversations_own_shard(cluster):
    conversations = Conversations(cluster, PREFIX, retention_s=600, channels=CHANNELS)
    cid = conversations.create_and_begin("default", {}, "t-1").conversation.id
    listener = ShardListener(cluster, conversations.channel(cid))
    try:
        conversations.store_turn(cid, "t-1", [{"type": "message", "from": "bot", "text": "Hi",
                                               "conversation": cid, "id": "m_1"}], {},
                                 status="bot", release=True)
        assert json.loads(listener.next()["data"])["text"] == "Hi"  # store_turn.lua
        conversations.append_and_begin(cid, {"type": "message", "from": "visitor",
                                             "text": "hello", "conversation": cid,
                                             "id": "v_1"}, "v_1", "t-2")
        assert json.loads(listener.next()["data"])["text"] == "hello"  # append.lua
        assert conversations.change_status(cid, lifecycle.closing(cid, "visitor", {}),
                                           ("bot",))  # change_status.lua
        assert json.loads(listener.next()["data"])["status"] == "closed"
        conversations.publish(cid, {"type": "typing", "from": "visitor"})  # SPUBLISH itself
        assert json.loads(listener.next()["data"])["type"] == "typing"
        # Nothing went to classic pub/sub: no node's bus carried it.
        assert all(classic_subscribers(on_node(cluster, node), conversations.channel(cid)) == 0
                   for node in cluster.get_primaries())
    finally:
        listener.close()


def test_routings_scripts_spublish_on_routings_shard_and_tell_places_on_the_conversations(
        cluster):
    conversations = Conversations(cluster, PREFIX, retention_s=600, channels=CHANNELS)
    # as a worker has it: the places rung in shared round trips, to each conversation's master
    shared = Conversations(cluster, PREFIX, retention_s=600, shared=Coalescer(cluster),
                           channels=CHANNELS)
    board = Board(cluster, PREFIX, CHANNELS, shared.tell_places)
    team = ShardListener(cluster, CHANNELS.name(TEAM_TOPIC))
    waiting, also = (conversations.create_and_begin("default", {}, "t").conversation.id
                     for _ in range(2))
    place = ShardListener(cluster, conversations.channel(waiting))
    try:
        conversations.update(waiting, status="queued")  # as the bot's escalation leaves it
        entry = {"queued_ms": 1, "priority": 0}
        # Nobody of the queue is there: it waits, and is told its place from its own shard.
        outcome, position, made = board.enqueue(waiting, "support", "longest_idle", entry, 600,
                                                only_if_present=False)
        assert (outcome, position, made) == (1, 1, [])
        assert json.loads(team.next()["data"]) == {"type": "team_changed"}
        told = json.loads(place.next()["data"])
        assert (told["status"], told["position"], told["conversation"]) == \
            ("queued", 1, waiting)
        # One whose record no longer waits (a person took it meanwhile) is not told.
        board.enqueue(also, "support", "longest_idle", entry, 600, only_if_present=False)
        conversations.update(waiting, status="agent")
        assert board.tell_positions("support") == 2
        assert place.pubsub.get_sharded_message(timeout=1.0) is None
    finally:
        team.close()
        place.close()


# --- the hub ------------------------------------------------------------------------------------


def test_a_conversations_frame_reaches_the_hub_by_ssubscribe_on_its_master(cluster, probe):
    conversations = Conversations(cluster, PREFIX, retention_s=600, channels=CHANNELS)
    cids = []
    while len({owner(cluster, conversations.topic(cid)).name for cid in cids}) < 3:
        cids.append(conversations.create_and_begin("default", {}, "t").conversation.id)
    for cid in cids:
        probe.watch(conversations.topic(cid))
    for cid in cids:
        assert probe.resyncs(conversations.topic(cid), 1) == {"resyncs": 1, "confirmed": True}
    # One connection to each master, with that master's channels.
    links = probe.ask("links")
    assert sorted(links) == sorted(node.name for node in cluster.get_primaries())
    for cid in cids:
        channel = conversations.channel(cid)
        node = owner(cluster, conversations.topic(cid))
        assert channel in links[node.name]
        assert shard_subscribers(on_node(cluster, node), channel) == 1
        assert all(classic_subscribers(on_node(cluster, each), channel) == 0
                   for each in cluster.get_primaries())

    for cid in cids:  # a bot turn, SPUBLISHed by its script
        conversations.store_turn(cid, "t", [{"type": "message", "from": "bot", "text": cid,
                                             "conversation": cid, "id": "m_" + cid}], {},
                                 status="bot", release=True)
    for cid in cids:
        assert probe.heard(conversations.topic(cid), cid) == [cid]


def test_a_subscribe_told_moved_is_made_on_the_master_that_owns_the_slot(cluster, probe):
    topic = "conv:c_moved_probe"
    probe.watch("conv:c_warm")  # the probe's map is read
    probe.resyncs("conv:c_warm", 1)
    probe.ask("spoil_map", topic=topic)
    probe.watch(topic)  # SSUBSCRIBE on the wrong master: MOVED
    assert probe.resyncs(topic, 1)["confirmed"]
    right = owner(cluster, topic)
    assert shard_subscribers(on_node(cluster, right), CHANNELS.name(topic)) == 1
    CHANNELS.publish(cluster, topic, typing("after"))
    assert probe.heard(topic, "after") == ["after"]


def test_a_slot_moved_to_another_master_is_subscribed_there_and_resynced(own_cluster):
    client = ClusterClient.from_url(own_cluster.url, decode_responses=True)
    hub = Probe(own_cluster.service_url)
    try:
        topic = topic_on(client, own_cluster.nodes[0].port)
        channel = CHANNELS.name(topic)
        hub.watch(topic)
        assert hub.resyncs(topic, 1)["resyncs"] == 1
        source, target = own_cluster.nodes[0], own_cluster.nodes[1]
        source_client, target_client = (redis_lib.Redis(port=node.port, decode_responses=True)
                                        for node in (source, target))
        assert shard_subscribers(source_client, channel) == 1

        # A resharding moves the (empty) slot: the source master unsubscribes the hub itself.
        slot, target_id = client.keyslot(channel), target_client.execute_command("CLUSTER MYID")
        for node in (target_client, source_client):
            node.execute_command("CLUSTER", "SETSLOT", slot, "NODE", target_id)

        assert hub.resyncs(topic, 2) == {"resyncs": 2, "confirmed": True}
        assert shard_subscribers(target_client, channel) == 1
        assert shard_subscribers(source_client, channel) == 0
        client.nodes_manager.initialize()
        CHANNELS.publish(client, topic, typing("moved"))
        assert hub.heard(topic, "moved") == ["moved"]
    finally:
        hub.close()
        client.close()


def test_a_killed_and_restarted_master_is_subscribed_again_and_its_topics_resync(own_cluster):
    client = ClusterClient.from_url(own_cluster.url, decode_responses=True)
    hub = Probe(own_cluster.service_url)
    try:
        victim, bystander = own_cluster.nodes[1], own_cluster.nodes[2]
        doomed, spared = topic_on(client, victim.port), topic_on(client, bystander.port)
        for topic in (doomed, spared):
            hub.watch(topic)
            assert hub.resyncs(topic, 1)["resyncs"] == 1

        os.kill(victim.process.pid, signal.SIGKILL)
        victim.process.wait(timeout=10)
        victim.start()  # the same port and nodes.conf: it serves its slots again

        assert hub.resyncs(doomed, 2) == {"resyncs": 2, "confirmed": True}
        victim_client = redis_lib.Redis(port=victim.port, decode_responses=True)
        assert poll_until(lambda: shard_subscribers(victim_client, CHANNELS.name(doomed)) == 1,
                          WAIT_S)
        assert poll_until(lambda: "cluster_state:ok" in
                          str(victim_client.execute_command("CLUSTER", "INFO")), WAIT_S)
        CHANNELS.publish(client, doomed, typing("back"))
        assert hub.heard(doomed, "back") == ["back"]
        # The other master's connection never failed: its topic was not resynced again.
        assert hub.resyncs(spared, 2, timeout=0.1)["resyncs"] == 1
        CHANNELS.publish(client, spared, typing("spared"))
        assert hub.heard(spared, "spared") == ["spared"]
    finally:
        logged = hub.close()
        client.close()
    assert "reconnecting" in logged  # it did lose the connection, and said so


# --- the service --------------------------------------------------------------------------------


def test_the_service_relays_a_visitors_message_to_a_second_tab_by_sharded_pubsub(
        cluster, cluster_server, open_visitor):  # noqa: F811 - the fixture imported above
    first = open_visitor(cluster_server.url)
    greeting = first.hello()
    cid = greeting.conversation
    second = None
    for _ in range(20):  # a second tab on the other worker, so the frame crosses pub/sub
        tab = open_visitor(cluster_server.url)
        tab.hello(greeting.token, last_seq=first.last_seq)
        if serving_worker(cluster_server, tab) != serving_worker(cluster_server, first):
            second = tab
            break
        tab.close()
    assert second is not None, "every second tab went to the first one's worker"

    channel = f"concierge:conv:{{{cid}}}"
    node = on_node(cluster, cluster.nodes_manager.get_node_from_slot(cluster.keyslot(channel)))
    assert poll_until(lambda: shard_subscribers(node, channel) == 2, WAIT_S)  # both workers
    assert all(classic_subscribers(on_node(cluster, each), channel) == 0
               for each in cluster.get_primaries())

    first.say("opening hours", message_id="relayed")
    heard = second.receive_until(bot_says("anything else"))
    assert [f["id"] for f in heard if message_from("visitor")(f)] == ["relayed"]
    assert isinstance(second, VisitorSocket)
