"""What a socket path answers before any WebSocket exists: malformed handshakes and origins.

Before the fix, an upgrade without `Sec-WebSocket-Version`, without a key, or of version 8 got
HTTP 500 and a traceback in the log (wsproto raised inside flask-sock); a key that was not 16
bytes was accepted; and in development the origin check trusted the Host header, so a page on
a rebound DNS name (`Host: evil.example`, `Origin: http://evil.example`) could open a socket.
"""

from __future__ import annotations

import base64
import os
import socket
import struct
from dataclasses import dataclass
from urllib.parse import urlsplit

import pytest

from tests.support.process import poll_until
from tests.support.ws import RECEIVE_TIMEOUT_S, assert_origin_refused, handshake

pytestmark = pytest.mark.on_cluster  # also run on a Redis Cluster (make test)

PATH = "/ws/visitor"
SELF_URL = "https://chat.example.test"


@dataclass
class Answer:
    status: int
    headers: dict[str, str]  # names lower-cased
    body: str


def upgrade(base_url: str, *, drop: tuple[str, ...] = (), path: str = PATH,
            method: str = "GET", **headers: str) -> Answer:
    """Send an upgrade request by hand, without the headers named in `drop` and with `headers`
    (underscores for dashes) set; return the server's answer."""
    answer = handshake(base_url, path, {name.replace("_", "-"): value
                                        for name, value in headers.items()},
                       method=method, drop=drop)
    return Answer(answer.status, answer.headers, answer.body.decode("utf-8", "replace"))


# --- malformed handshakes ----------------------------------------------------------------------


@pytest.mark.parametrize(("change", "says"), [
    ({"drop": ("Sec-WebSocket-Key",)}, "Sec-WebSocket-Key"),
    ({"Sec_WebSocket_Key": "c2hvcnQ="}, "16 random bytes"),  # base64 of 5 bytes
    ({"Sec_WebSocket_Key": "not base64 at all!"}, "16 random bytes"),
    ({"Sec_WebSocket_Key": base64.b64encode(os.urandom(17)).decode()}, "16 random bytes"),
    ({"drop": ("Upgrade",)}, "Upgrade: websocket"),
    ({"Upgrade": "h2c"}, "Upgrade: websocket"),
    ({"drop": ("Connection",)}, "Connection: Upgrade"),
    ({"Connection": "keep-alive"}, "Connection: Upgrade"),
    ({"drop": ("Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version")},
     "WebSocket only"),
])
def test_a_malformed_upgrade_gets_400_saying_what_is_wrong(live_server, server, change, says):
    answer = upgrade(server, **change)
    assert answer.status == 400, answer
    assert says in answer.body and len(answer.body) < 200, answer
    assert "RemoteProtocolError" not in live_server.stderr(server)  # wsproto's, as a 500


@pytest.mark.parametrize("change", [{"drop": ("Sec-WebSocket-Version",)},
                                    {"Sec_WebSocket_Version": "8"},
                                    {"Sec_WebSocket_Version": "14"},
                                    {"drop": ("Sec-WebSocket-Version", "Sec-WebSocket-Key")}])
def test_another_websocket_version_gets_426_naming_13(live_server, server, change):
    answer = upgrade(server, **change)
    assert answer.status == 426, answer
    assert answer.headers["sec-websocket-version"] == "13"
    assert "version 13" in answer.body
    assert "RemoteProtocolError" not in live_server.stderr(server)  # wsproto's, as a 500


def test_a_well_formed_upgrade_is_still_accepted(server):
    assert upgrade(server).status == 101


def test_a_post_to_a_socket_path_is_no_server_error(server):
    assert upgrade(server, method="POST").status in (400, 405)


# --- origins without ALLOWED_ORIGINS (development) ---------------------------------------------


def test_a_rebound_dns_name_is_a_foreign_origin(server):
    # A page on evil.example whose name now points at 127.0.0.1: its Host and Origin agree.
    answer = upgrade(server, Host="evil.example", Origin="http://evil.example")
    assert answer.status == 101, answer  # opened only to say why, and closed with 1008:
    assert_origin_refused(server, "http://evil.example")


@pytest.mark.parametrize("origin", ["https://127.0.0.1:{port}", "http://127.0.0.1:{other}",
                                    "http://127.0.0.1", "http://127.0.0.1:{port}/page",
                                    "http://user@127.0.0.1:{port}", "http://127.0.0.2:{port}"])
def test_the_servers_own_host_on_another_scheme_or_port_is_foreign(server, origin):
    port = urlsplit(server).port
    assert_origin_refused(server, origin.format(port=port, other=port + 1))


@pytest.mark.parametrize("origin", ["http://127.0.0.1:{port}", "http://localhost:{port}",
                                    "http://[::1]:{port}", "HTTP://LocalHost:{port}"])
def test_the_servers_own_origins_are_accepted_whatever_the_host_header(server, origin):
    port = urlsplit(server).port
    answer = upgrade(server, Origin=origin.format(port=port), Host="evil.example")
    assert answer.status == 101, answer


@pytest.fixture(scope="module")
def self_url_server(live_server) -> str:
    """Return the app told (SELF_URL) that its public address is https://chat.example.test."""
    return live_server(SELF_URL=SELF_URL, WEB_CONCURRENCY="1")


def test_self_urls_origin_is_one_of_the_servers_own(self_url_server, open_visitor):
    assert upgrade(self_url_server, Origin=SELF_URL).status == 101
    assert upgrade(self_url_server, Origin=SELF_URL + ":443").status == 101
    assert_origin_refused(self_url_server, "http://chat.example.test")
    tab = open_visitor(self_url_server, headers={"Origin": SELF_URL})
    assert tab.hello(None).errors == []


def test_a_refused_origin_never_starts_a_conversation(server, redis):
    assert_origin_refused(server, "http://evil.example")
    assert not redis.keys("*conv:*")


# --- a client gone mid-handshake ---------------------------------------------------------------

RESETS = 30  # handshakes reset by their clients; the server meets most resets mid-handshake


def test_a_client_resetting_during_the_handshake_costs_a_log_line_not_a_traceback(
        live_server, server):
    parts = urlsplit(server)
    request = (f"GET {PATH} HTTP/1.1\r\nHost: {parts.netloc}\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: "
               f"{base64.b64encode(os.urandom(16)).decode()}\r\nSec-WebSocket-Version: 13\r\n\r\n")

    def gone() -> int:
        return live_server.stderr(server).count("the client went away")

    before = gone()
    for _ in range(RESETS):
        with socket.create_connection((parts.hostname, parts.port)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.sendall(request.encode("latin-1"))  # and reset at once, before the 101

    assert poll_until(lambda: gone() > before, RECEIVE_TIMEOUT_S)
    assert "Exception on /ws/visitor" not in live_server.stderr(server)
