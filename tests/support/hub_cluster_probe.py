"""The hub on Redis Cluster, under gevent's patched sockets as in a worker: run as a script.

`python -m tests.support.hub_cluster_probe CLUSTER_URL` stores a bot turn in each of forty
conversations (their keys on every master) while the hub, on one classic pub/sub connection to
one node, watches their topics. It prints one JSON line: how many masters the conversations
live on, which were heard, and which were not within the wait.
"""

from gevent import monkey

monkey.patch_all()

import json  # noqa: E402 - after patching, as a gevent worker imports
import sys  # noqa: E402

import gevent  # noqa: E402
import gevent.event  # noqa: E402
from redis.cluster import RedisCluster  # noqa: E402

from chat.conversations import Conversations  # noqa: E402
from chat.hub import Hub  # noqa: E402

WAIT_S = 10


class Tab:
    """A subscriber as web/feeds.py's Feed is one: what it was handed, and its resync."""

    def __init__(self) -> None:
        self.transport = object()
        self.texts: list[str] = []
        self.heard = gevent.event.Event()
        self.subscribed = gevent.event.Event()

    def deliver(self, frame: dict, raw: str) -> None:
        self.texts.append(frame["text"])
        self.heard.set()

    def resync_later(self) -> None:
        self.subscribed.set()

    def has(self, _seq: int) -> bool:
        return False


def main(url: str) -> None:
    client = RedisCluster.from_url(url, decode_responses=True)
    pubsub_client = RedisCluster.from_url(url, decode_responses=True, protocol=2)
    hub = Hub(pubsub_client.pubsub, "probe:")
    conversations = Conversations(client, "probe:", retention_s=600)
    cids = [conversations.create_and_begin("default", {}, "t").conversation.id for _ in range(40)]
    nodes = {client.nodes_manager.get_node_from_slot(client.keyslot(conversations._keys(cid)[0]))
             .name for cid in cids}
    tabs = {cid: Tab() for cid in cids}
    for cid, tab in tabs.items():
        hub.watch(conversations.topic(cid), tab)
    subscribed = all(tab.subscribed.wait(WAIT_S) for tab in tabs.values())
    for cid in cids:
        conversations.store_turn(cid, "t", [{"type": "message", "from": "bot", "text": cid,
                                             "conversation": cid, "id": "m_" + cid}], {},
                                 status="bot", release=True)
    heard = [cid for cid, tab in tabs.items() if tab.heard.wait(WAIT_S) and tab.texts == [cid]]
    hub.stopping = True
    print(json.dumps({"nodes": len(nodes), "subscribed": subscribed, "heard": len(heard),
                      "missed": [cid for cid in cids if cid not in heard]}))


if __name__ == "__main__":
    main(sys.argv[1])
