"""Small tools for the flow tests: build a flow from inline YAML, talk to it, fake HTTP."""

from __future__ import annotations

import json
import textwrap
from collections.abc import Mapping
from typing import Any

from bots import engine
from bots.calls import CallError, Response
from bots.checker import check_text
from bots.flow import Flow
from bots.machine import build_machine


def make_flow(yaml_text: str, path: str = "flows/test.yaml") -> Flow:
    """Check inline YAML (dedented) and build its machine; fail the test on any error."""
    flow, diagnostics = check_text(textwrap.dedent(yaml_text), path)
    errors = [str(d) for d in diagnostics if d.is_error]
    assert flow is not None and not errors, "\n".join(errors)
    flow.machine = build_machine(flow)
    return flow


def diagnostics(yaml_text: str, path: str = "flows/test.yaml") -> list[str]:
    """Return every diagnostic of inline YAML (dedented), as printed by `flows check`."""
    _flow, found = check_text(textwrap.dedent(yaml_text), path)
    return [str(d) for d in found]


def errors(yaml_text: str, path: str = "flows/test.yaml") -> list[str]:
    return [d for d in diagnostics(yaml_text, path) if ": error: " in d]


def warnings(yaml_text: str, path: str = "flows/test.yaml") -> list[str]:
    return [d for d in diagnostics(yaml_text, path) if ": warning: " in d]


def assert_plain_json(stored: Mapping[str, Any]) -> None:
    """A stored conversation survives a strict JSON round trip unchanged."""
    assert json.loads(json.dumps(stored, allow_nan=False)) == stored


class Chat:
    """A conversation with a flow, one turn at a time, checking every stored form is JSON."""

    def __init__(self, flow: Flow, context: engine.Context | None = None) -> None:
        self.flow = flow
        self.context = context or engine.Context()
        self.turn = engine.start(flow, self.context)
        assert_plain_json(self.turn.stored)

    @property
    def stored(self) -> dict[str, Any]:
        return self.turn.stored

    @property
    def state(self) -> str:
        return self.turn.stored["state"]

    @property
    def vars(self) -> dict[str, Any]:
        return self.turn.stored["vars"]

    @property
    def messages(self) -> list[str]:
        return self.turn.messages

    @property
    def buttons(self) -> list[dict[str, str]]:
        """The buttons of the last message of the last turn."""
        offered = [o for o in self.turn.outputs if o["type"] == "message"]
        return offered[-1].get("buttons", []) if offered else []

    def outputs_of(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.turn.outputs if o["type"] == kind]

    def say(self, text: str, payload: str | None = None) -> list[str]:
        self.turn = engine.reply(self.flow, self.stored, text, payload, self.context)
        assert_plain_json(self.turn.stored)
        return self.turn.messages

    def click(self, title: str) -> list[str]:
        button = next(b for b in self.buttons if b["title"] == title)
        return self.say(button["title"], button["payload"])

    def no_agents(self) -> list[str]:
        self.turn = engine.no_agents(self.flow, self.stored, self.context)
        assert_plain_json(self.turn.stored)
        return self.turn.messages


class RecordingClient:
    """An HTTP client that records each request and answers with a Response or raises."""

    def __init__(self, answer: Response | Exception) -> None:
        self.answer = answer
        self.requests: list[dict[str, Any]] = []

    def request(self, method: str, url: str, *, headers: Mapping[str, str], json: Any,
                timeout: float) -> Response:
        self.requests.append({"method": method, "url": url, "headers": dict(headers),
                              "json": json, "timeout": timeout})
        if isinstance(self.answer, Exception):
            raise self.answer
        return self.answer


__all__ = ["CallError", "Chat", "RecordingClient", "Response", "assert_plain_json",
           "diagnostics", "errors", "make_flow", "warnings"]
