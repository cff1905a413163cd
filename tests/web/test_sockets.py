"""What happens before a socket exists: the origin check and the declined compression."""

from __future__ import annotations

import pytest

from tests.conftest import SHOP_ORIGIN
from tests.support.ws import assert_origin_refused, handshake

pytestmark = pytest.mark.on_cluster  # also run on a Redis Cluster (make test)

PATH = "/ws/visitor"


def test_a_foreign_origin_is_told_why_and_closed_with_1008(live_server, server):
    assert_origin_refused(server, "https://evil.example")
    # and the operator is told which origin, and what ALLOWED_ORIGINS allows
    assert "refused a visitor socket from origin 'https://evil.example'" in \
        live_server.stderr(server)


def test_with_allowed_origins_unset_the_servers_own_origin_is_accepted(server):
    # A raw upgrade, as a browser sends it: simple-websocket's client leaves the port out of its
    # Host header, so the server could not tell that the origin is its own.
    response = handshake(server, PATH, {"Origin": server})
    assert response.status == 101
    assert response.headers["upgrade"].lower() == "websocket"


def test_without_an_origin_header_the_socket_is_accepted(server):
    assert handshake(server, PATH).status == 101


@pytest.mark.parametrize("origin", [
    "http://127.0.0.1",  # the server's own origin is not listed
    "https://shop.example.com.evil.example",
    "http://shop.example.com",
    "null",
])
def test_an_origin_not_in_allowed_origins_is_refused(configured_server, origin):
    if origin == "http://127.0.0.1":
        origin = configured_server
    assert_origin_refused(configured_server, origin)


def test_an_origin_in_allowed_origins_is_accepted(configured_server, open_visitor):
    tab = open_visitor(configured_server, headers={"Origin": SHOP_ORIGIN})
    assert tab.hello(None).errors == []


def test_permessage_deflate_is_declined(server):
    response = handshake(server, PATH, {
        "Sec-WebSocket-Extensions": "permessage-deflate; client_max_window_bits"})
    assert response.status == 101
    assert response.headers["upgrade"].lower() == "websocket"
    assert "sec-websocket-extensions" not in response.headers


def test_a_client_that_offered_deflate_talks_uncompressed(server, open_visitor):
    tab = open_visitor(server, headers={"Sec-WebSocket-Extensions": "permessage-deflate"})
    assert tab.hello(None).errors == []  # frames without RSV1 parse as plain text
