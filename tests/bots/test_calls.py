"""The real HTTP client of `call`, against a server on 127.0.0.1."""

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from bots import engine
from bots.calls import MAX_RESPONSE_BYTES, CallError, WebClient

from .helpers import Chat, make_flow


class _Handler(BaseHTTPRequestHandler):
    seen: list[dict] = []

    def log_message(self, *args) -> None:  # keep the test output quiet
        pass

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.answer()

    def do_POST(self) -> None:  # noqa: N802
        self.answer()

    def answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.seen.append({"method": self.command, "path": self.path,
                          "auth": self.headers.get("Authorization"),
                          "body": json.loads(body) if body else None})
        status, payload = 200, json.dumps({"status": "shipped", "path": self.path}).encode()
        if self.path.startswith("/missing"):
            status, payload = 404, b'{"error": "no such order"}'
        elif self.path.startswith("/html"):
            payload = b"<html>not json</html>"
        elif self.path.startswith("/huge"):
            payload = b"[" + b"1," * (MAX_RESPONSE_BYTES // 2 + 10) + b"1]"
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture
def client(server) -> Iterator[WebClient]:
    _Handler.seen.clear()
    web = WebClient(server)
    yield web
    web.close()


def request(client: WebClient, url: str, method: str = "GET", **kwargs):
    return client.request(method, url, headers=kwargs.get("headers", {}),
                          json=kwargs.get("json"), timeout=kwargs.get("timeout", 5))


def test_a_json_answer_is_parsed(client, server):
    response = request(client, f"{server}/orders/AB1")
    assert response.status == 200
    assert response.json == {"status": "shipped", "path": "/orders/AB1"}


def test_a_url_starting_with_slash_goes_to_the_server_itself(client):
    assert request(client, "/orders/AB2").json["path"] == "/orders/AB2"


def test_headers_and_json_body_are_sent(client):
    request(client, "/orders", "POST", headers={"Authorization": "Bearer t"}, json={"a": [1]})
    assert _Handler.seen == [{"method": "POST", "path": "/orders", "auth": "Bearer t",
                              "body": {"a": [1]}}]


def test_an_error_status_is_an_answer_not_an_exception(client):
    response = request(client, "/missing/1")
    assert response.status == 404 and response.json == {"error": "no such order"}


def test_a_body_that_is_not_json_gives_none(client):
    response = request(client, "/html")
    assert response.status == 200 and response.json is None


def test_a_too_large_answer_is_a_call_error(client):
    with pytest.raises(CallError, match="larger than"):
        request(client, "/huge")


def test_a_refused_connection_is_a_call_error():
    with socket.socket() as probe:  # a port that was free a moment ago: nobody listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    web = WebClient()
    with pytest.raises(CallError):
        request(web, f"http://127.0.0.1:{port}/x")
    web.close()


def test_a_server_that_never_answers_times_out_as_a_call_error():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)  # the connection is accepted by the kernel, but nothing answers
        web = WebClient()
        with pytest.raises(CallError, match="Timeout"):
            request(web, f"http://127.0.0.1:{silent.getsockname()[1]}/x", timeout=0.2)
        web.close()


@pytest.mark.parametrize("url", ["ftp://127.0.0.1/x", "file:///etc/passwd", "orders/1"])
def test_a_url_that_is_not_http_is_a_call_error(url):
    with pytest.raises(CallError):
        request(WebClient(), url)


def test_a_flow_call_through_the_real_client(server):
    flow = make_flow("""\
        start: lookup
        states:
          lookup:
            call: {url: "/orders/AB1", save: order}
            on_error: failed
            next: done
          done: {say: "{{ vars.order.json.status }}", end: true}
          failed: {say: "failed {{ vars.order.status }}", end: true}
        """)
    web = WebClient(server)
    chat = Chat(flow, engine.Context(http=web))
    web.close()
    assert chat.messages == ["shipped"]
    assert chat.vars["order"]["status"] == 200


CALL_WITH_INPUT = """\
start: q
states:
  q: {{ask: "Order number?", save: id, next: lookup}}
  lookup:
    call:
      url: "{url}"
      headers: {{X-Visitor: "{{{{ visitor.name }}}}"}}
    on_error: failed
    next: done
  done: {{say: done, end: true}}
  failed: {{say: "Sorry, that failed.", end: true}}
"""


def test_a_url_made_unusable_by_the_visitors_answer_goes_to_on_error(server):
    flow = make_flow(CALL_WITH_INPUT.format(url=server + "/orders/{{ vars.id }}"))
    web = WebClient(server)
    chat = Chat(flow, engine.Context(http=web, visitor={"name": "Ada"}))
    assert chat.say("AB\x7f12") == ["Sorry, that failed."]


def test_a_header_with_a_non_ascii_name_goes_to_on_error_or_is_sent(server):
    flow = make_flow(CALL_WITH_INPUT.format(url=server + "/orders/{{ vars.id }}"))
    web = WebClient(server)
    chat = Chat(flow, engine.Context(http=web, visitor={"name": "José"}))
    assert chat.say("AB1") in (["done"], ["Sorry, that failed."])
