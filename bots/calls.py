"""The HTTP seam of `call`: the real client, and canned answers for tests.

The engine only knows the `HttpClient` protocol; the service and `flows chat`
pass `WebClient`, `flows test` passes `CannedClient`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urljoin

import httpx

MAX_RESPONSE_BYTES = 1_000_000  # a flow stores the reply in the conversation: keep it small


class CallError(Exception):
    """The request did not get an HTTP answer (network error, timeout, bad URL)."""


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    json: Any = None  # None when the body is not JSON


class HttpClient(Protocol):
    def request(self, method: str, url: str, *, headers: Mapping[str, str], json: Any,
                timeout: float) -> Response: ...


class WebClient:
    """Make real requests; a url starting with '/' goes to `base_url` (the server itself)."""

    def __init__(self, base_url: str = "http://127.0.0.1:5000") -> None:
        self.base_url = base_url.rstrip("/") + "/"
        self._client = httpx.Client(follow_redirects=False, trust_env=False)

    def request(self, method: str, url: str, *, headers: Mapping[str, str], json: Any,
                timeout: float) -> Response:
        if url.startswith("/"):
            url = urljoin(self.base_url, url.lstrip("/"))
        if not url.startswith(("http://", "https://")):
            raise CallError(f"not an http(s) URL: {url!r}")
        try:
            with self._client.stream(method, url, headers=dict(headers), json=json,
                                     timeout=timeout) as answer:
                body = bytearray()
                for chunk in answer.iter_bytes():
                    body += chunk
                    if len(body) > MAX_RESPONSE_BYTES:
                        raise CallError(f"response larger than {MAX_RESPONSE_BYTES} bytes")
        except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
            # ValueError covers what a visitor's answer can do to a url or header (a control
            # character, a non-ASCII header value): the call fails, the conversation goes on.
            raise CallError(f"{type(exc).__name__}: {exc}") from exc
        return Response(answer.status_code, _json_or_none(bytes(body)))

    def close(self) -> None:
        self._client.close()


def _json_or_none(body: bytes) -> Any:
    import json

    try:
        return json.loads(body) if body else None
    except ValueError:
        return None


class UnexpectedRequest(CallError):
    """A conversation test made a request it has no canned answer for."""


class CannedClient:
    """Answer from a table {"GET https://...": {"status": 200, "json": {...}}}."""

    def __init__(self, answers: Mapping[str, Mapping[str, Any]]) -> None:
        self.written = {_request_key(*key.split(None, 1)) if " " in key.strip() else key: key
                        for key in answers}  # each answer's key as the test spells it
        self.answers = {key: answers[written] for key, written in self.written.items()}
        self.requests: list[str] = []
        self.unexpected: list[str] = []

    def unused(self) -> list[str]:
        """List the answers (as the test spells them) that no request asked for."""
        return [written for key, written in self.written.items() if key not in self.requests]

    def request(self, method: str, url: str, *, headers: Mapping[str, str], json: Any,
                timeout: float) -> Response:
        key = _request_key(method, url)
        self.requests.append(key)
        if key not in self.answers:
            self.unexpected.append(key)
            raise UnexpectedRequest(f"no canned answer for {key}")
        answer = self.answers[key]
        if answer.get("error"):
            raise CallError(str(answer["error"]))
        return Response(int(answer.get("status", 200)), answer.get("json"))


def _request_key(method: str, url: str) -> str:
    return f"{method.upper()} {url.strip()}"
