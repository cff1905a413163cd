"""The whole service on Redis Cluster: real gunicorn (2 gevent workers) with REDIS_URL naming the
three-master cluster (`redis+cluster://`), driven over real WebSockets.

A visitor is greeted and the bot answers; an agent made with `flask agents` on the cluster goes
available, gets an escalated conversation and talks with the visitor, the two sockets served by
different workers (so every frame between them crosses the cluster's pub/sub); conversations
land on every master; /readyz answers ready.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.gunicorn_server import ROOT, GunicornServer
from tests.support.ws import (
    AgentSocket,
    VisitorSocket,
    bot_says,
    frame_like,
    message_from,
    status_is,
)

ASK = "I want to talk to a person"  # the shipped default flow escalates on this
VISITORS = 30  # conversations opened: all three masters hold some, bar a 1-in-60,000 chance
COMMAND_TIMEOUT_S = 60


@pytest.fixture(scope="module")
def cluster_server(cluster_url: str, shipped_flows_dir: Path,
                   tmp_path_factory: pytest.TempPathFactory) -> Iterator[GunicornServer]:
    server = GunicornServer(tmp_path_factory.mktemp("cluster-gunicorn"),
                            {"REDIS_URL": cluster_url, "FLOWS_DIR": str(shipped_flows_dir)})
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sockets() -> Iterator[list]:
    opened: list = []
    yield opened
    for tab in opened:
        tab.close()


def flask_agents(cluster_url: str, *args: str, stdin: str = "") -> str:
    """Run `flask agents …` against the cluster, as an operator would; return its output."""
    env = {**os.environ, "REDIS_URL": cluster_url, "FLASK_APP": "app"}
    result = subprocess.run([sys.executable, "-m", "flask", "agents", *args], cwd=ROOT, env=env,
                            input=stdin, capture_output=True, text=True,
                            timeout=COMMAND_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    return result.stdout


def serving_worker(server: GunicornServer, tab: VisitorSocket | AgentSocket) -> int:
    """Return the pid of the worker holding the server's end of `tab`'s TCP connection."""
    client_port = tab.ws.sock.getsockname()[1]
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.rsplit(":", 1)[1], 16) == server.port and \
                    int(remote.rsplit(":", 1)[1], 16) == client_port:
                inodes.add(fields[9])
    for pid in server.worker_pids():
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            try:
                target = os.readlink(fd)
            except OSError:  # closed while we looked
                continue
            if target.startswith("socket:[") and target[8:-1] in inodes:
                return pid
    raise AssertionError(f"no worker holds the connection from port {client_port}")


def test_the_service_serves_visitors_and_agents_on_a_cluster(cluster, cluster_url,
                                                             cluster_server, sockets):
    url = cluster_server.url
    ready = httpx.get(f"{url}/readyz", timeout=5, trust_env=False)
    assert (ready.status_code, ready.json()) == (200, {"ready": True})

    # An agent account, made with the CLI on the cluster; its socket, available.
    flask_agents(cluster_url, "add", "ada", "--name", "Ada L.", "--queues", "support",
                 "--password-stdin", stdin="a-long-enough-password\n")
    assert "ada" in flask_agents(cluster_url, "list")
    token = flask_agents(cluster_url, "token", "ada").strip().splitlines()[-1]
    ada = AgentSocket(url, token)
    sockets.append(ada)
    ada.welcomed()
    ada.presence("available")
    agents_worker = serving_worker(cluster_server, ada)

    # Visitors, greeted by the bot: their conversations go to every master.
    visitors = []
    for _ in range(VISITORS):
        tab = VisitorSocket(url)
        sockets.append(tab)
        greeting = tab.hello()
        assert greeting.messages and greeting.messages[0]["from"] == "bot", greeting.frames
        visitors.append(tab)
    holders = set()
    for tab in visitors:
        record = f"concierge:conv:{{{tab.greeting.conversation}}}"
        node = cluster.get_node_from_key(record)
        assert node.redis_connection.exists(record) == 1  # on that master itself, no redirect
        holders.add(node.name)
    assert len(holders) == 3, holders

    # The bot answers a message.
    elsewhere = [tab for tab in visitors if serving_worker(cluster_server, tab) != agents_worker]
    assert elsewhere, "every visitor socket went to the agent's worker"
    visitor = elsewhere[0]
    cid = visitor.greeting.conversation
    visitor.talk("opening hours", until=bot_says("Our team answers chats"))

    # Escalated, it reaches the agent on the other worker; they talk both ways.
    visitor.say(ASK)
    assert visitor.receive_until(status_is("agent"))[-1]["agent"] == {"name": "Ada L."}
    held = ada.assigned()
    assert held["id"] == cid
    said = ada.say(cid, "Hello, Ada here.")
    ada.receive_until(frame_like("ack", id=said))
    assert visitor.receive_until(message_from("agent"))[-1]["text"] == "Hello, Ada here."
    visitor.say("Where is my order?")
    assert ada.receive_until(message_from("visitor", "Where is my order?"))[-1][
        "conversation"] == cid
    # Typing goes by conversations.publish alone (no script): it crosses the cluster too.
    visitor.send({"type": "typing", "active": True})
    assert ada.receive_until(frame_like("typing"))[-1]["from"] == "visitor"
