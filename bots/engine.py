"""Run one turn of a conversation with the bot.

A turn takes a flow, the conversation's stored bot state (plain JSON), the
visitor's input, and returns the new stored state with the outputs to send:

    {"type": "message", "text": "...", "buttons": [{"title": ..., "payload": ...}]}
    {"type": "escalate", "queue": ..., "priority": 0, "reason": "asked", "path": [...],
     "say": ["Connecting you with a person…"], "note": "…"}   (note: only when the flow gives one)
    {"type": "end"}

No Redis, no Flask, no sockets: `call` goes through the HTTP client passed in.
After an `escalate` output the caller routes the conversation; when nobody can
take it, `no_agents()` goes on at the state's `no_agents`.

Over ~300 lines: one turn's run (`_Run`) moves through every construct of the flow
language, and splitting it by construct would scatter one state machine over files.
"""

from __future__ import annotations

import copy
import datetime
import logging
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from .calls import CallError, HttpClient
from .flow import Button, Flow, Rule, State
from .graph import MAX_STEPS_PER_TURN  # the checker rejects longer chains of `next`
from .locales import builtin, canonical, pick, regional
from .machine import Cursor, event_name
from .matching import Invalid, has_phrase, normalize
from .templates import MISSED, REGION, TRANSLATIONS

log = logging.getLogger("concierge.flows")

STORED_VERSION = 1
MAX_PATH = 50  # states kept for an escalation's `path`
MAX_NOTE = 2000  # characters of an escalation's note, as for an agent's transfer note

# why a conversation reached a person (docs/protocol.md, "Escalation"; docs/flows.md)
ASKED, FALLBACK, INVALID, FLOW = "asked", "fallback", "invalid", "flow"
# what a stored conversation waits for
WAIT_INPUT, WAIT_ESCALATION, WAIT_NOTHING = "input", "escalation", "ended"


class TurnError(Exception):
    """A turn was asked of a conversation that cannot take it."""


@dataclass
class Turn:
    """What a turn returns: the state to store and the outputs to send."""

    stored: dict[str, Any]
    outputs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def messages(self) -> list[str]:
        return [o["text"] for o in self.outputs if o["type"] == "message"]


@dataclass
class Context:
    """What a turn may use from outside: the visitor, the network, the secrets."""

    visitor: Mapping[str, Any] = field(default_factory=dict)
    http: HttpClient | None = None
    secrets: Mapping[str, str] = field(default_factory=dict)
    today: datetime.date | None = None  # None: today in the flow's time zone (tests fix it)


def start(flow: Flow, context: Context | None = None) -> Turn:
    """Begin a conversation: enter the flow's start state."""
    run = _Run(flow, new_stored(flow), context or Context())
    run.enter(flow.start, FLOW, move=False)
    return run.finish()


def new_stored(flow: Flow) -> dict[str, Any]:
    """Return the stored bot state of a conversation that has not begun."""
    return {"v": STORED_VERSION, "flow": flow.id, "version": flow.version, "state": flow.start,
            "vars": {}, "wait": WAIT_INPUT, "misses": 0, "retries": 0, "path": [],
            "reason": FLOW}


def reply(flow: Flow, stored: Mapping[str, Any], text: str, payload: str | None = None,
          context: Context | None = None) -> Turn:
    """Answer one visitor input (typed text, or a button click with its payload)."""
    run = _Run(flow, stored, context or Context())
    if run.restart_if_edited():
        return run.finish()
    if run.wait != WAIT_INPUT:
        raise TurnError(f"the bot is not waiting for input (it waits for {run.wait})")
    run.answer(text, payload)
    return run.finish()


def no_agents(flow: Flow, stored: Mapping[str, Any], context: Context | None = None,
              why: str = "no_agents") -> Turn:
    """Go on at the escalating state's `no_agents`: nobody could take the conversation.

    `why`: nobody was there (or the queue is closed), the visitor left the queue to leave
    a message, or nobody took it within the queue's max_wait. Templates read it as `missed`.
    """
    run = _Run(flow, stored, context or Context())
    run.missed_why = why if why in MISSED else "no_agents"
    if run.restart_if_edited():
        return run.finish()
    state = flow.states[run.cursor.state]
    if not state.escalate or not state.no_agents:
        raise TurnError(f"state '{state.name}' did not escalate")
    run.return_to = None
    run.enter(state.no_agents, FLOW)
    return run.finish()


def resume(flow: Flow, stored: Mapping[str, Any], state: str,
           context: Context | None = None) -> Turn:
    """Hand the conversation back to the bot at `state` (an agent's transfer to the bot)."""
    if state not in flow.states:
        raise TurnError(f"flow '{flow.id}' has no state '{state}'")
    run = _Run(flow, stored, context or Context())
    run.return_to = None
    run.enter(state, FLOW, move=False)
    return run.finish()


def idle(flow: Flow, stored: Mapping[str, Any], context: Context | None = None) -> Turn:
    """Move a silent visitor to the flow's `on_idle` state; no outputs if there is none."""
    run = _Run(flow, stored, context or Context())
    target = flow.settings.on_idle
    if target and run.wait == WAIT_INPUT and run.cursor.state in flow.states:
        run.return_to = None
        run.enter(target, FLOW)
    return run.finish()


class _Run:
    """One turn in progress."""

    def __init__(self, flow: Flow, stored: Mapping[str, Any], context: Context) -> None:
        self.flow = flow
        self.context = context
        self.cursor = Cursor(str(stored.get("state") or flow.start))
        self.vars: dict[str, Any] = copy.deepcopy(dict(stored.get("vars") or {}))
        self.wait = stored.get("wait", WAIT_INPUT)
        self.misses = int(stored.get("misses", 0))
        self.retries = int(stored.get("retries", 0))
        self.path: list[str] = list(stored.get("path") or [])
        # why the bot came to the state it waits in: answering its `ask` goes on for that
        # reason, so a question on the way to a person keeps `asked` (docs/flows.md)
        self.reason = str(stored.get("reason") or FLOW)
        self.escalation = stored.get("escalation")
        # a detour's origin (`return: true`): the next answered question comes back there
        self.return_to: str | None = stored.get("return_to")
        if self.return_to not in flow.states:
            self.return_to = None  # an edit of the flow removed it: go on as the flow says
        self.missed_why = str(stored.get("missed") or "")  # why the last escalation was not taken
        self.locale, self.asked_locale = self.choose_locale(stored)
        # dates are read and written as the visitor's region does, in the conversation's
        # language: 31/12 for en-GB, 12/31 for en-US, both speaking the flow's "en"
        self.region = regional(self.asked_locale, self.locale)
        self.outputs: list[dict[str, Any]] = []
        self.steps = 0
        self.input = ""
        self.match: tuple[str, ...] = ()

    # --- plumbing ------------------------------------------------------------------------

    def finish(self) -> Turn:
        stored = {"v": STORED_VERSION, "flow": self.flow.id, "version": self.flow.version,
                  "state": self.cursor.state, "vars": self.vars, "wait": self.wait,
                  "misses": self.misses, "retries": self.retries, "path": self.path[-MAX_PATH:],
                  "reason": self.reason}
        if self.escalation:
            stored["escalation"] = self.escalation
        if self.return_to:
            stored["return_to"] = self.return_to
        if self.missed_why:
            stored["missed"] = self.missed_why
        if self.locale:
            stored["locale"], stored["asked_locale"] = self.locale, self.asked_locale
        return Turn(stored=stored, outputs=self.outputs)

    def choose_locale(self, stored: Mapping[str, Any]) -> tuple[str | None, Any]:
        """Return the conversation's language and the visitor's locale it was chosen for.

        The language stays as the flow last set it (a `locale:` switch) until the visitor's
        own locale changes, as when the site's page is reloaded in another language.
        """
        if not self.flow.locales:
            return None, None
        asked = self.context.visitor.get("locale")
        kept = stored.get("locale")
        offered = self.flow.locales
        # the same tag however written (EN, en; de_ch, de-CH): a switch the flow made stays
        if kept in offered and canonical(stored.get("asked_locale")) == canonical(asked):
            return kept, asked
        return pick(asked, offered), asked

    def today(self) -> datetime.date:
        if self.context.today is not None:
            return self.context.today
        return datetime.datetime.now(zoneinfo.ZoneInfo(self.flow.settings.time_zone)).date()

    def restart_if_edited(self) -> bool:
        """Send the visitor to start when the flow lost the state they were in."""
        if self.cursor.state in self.flow.states:
            return False
        log.info("flow %s lost state %r; restarting a conversation", self.flow.id,
                 self.cursor.state)
        self.say_text(builtin("restart", self.locale))
        self.vars.clear()
        self.return_to, self.missed_why = None, ""
        self.enter(self.flow.start, FLOW, move=False)
        return True

    def context_vars(self, secrets: bool = False) -> dict[str, Any]:
        names = {"vars": self.vars, "visitor": self.context.visitor, "input": self.input,
                 "match": self.match, "locale": self.locale or "", "missed": self.missed_why,
                 TRANSLATIONS: self.flow.translations, REGION: self.region}
        if secrets:
            names["secrets"] = self.context.secrets
        return names

    def say_text(self, text: str, buttons: list[Button] | None = None) -> None:
        message: dict[str, Any] = {"type": "message", "text": text}
        if buttons:
            message["buttons"] = self.shown(buttons)
        self.outputs.append(message)

    def say_all(self, templates: list[Any]) -> None:
        names = self.context_vars()
        for template in templates:
            text = template.render(names)
            if text.strip():  # a template that came out empty (a failed filter, say) says nothing
                self.say_text(text)

    def assign(self, assignments: Mapping[str, Any]) -> None:
        names = self.context_vars()
        for name, template in assignments.items():
            self.vars[name] = template.render(names)

    def offer(self, state: State) -> None:
        """Put the state's buttons on the last message said."""
        if state.buttons and self.outputs and self.outputs[-1]["type"] == "message":
            self.outputs[-1]["buttons"] = self.shown(state.buttons)

    def shown(self, buttons: list[Button]) -> list[dict[str, str]]:
        return [{"title": b.title_in(self.locale), "payload": b.payload} for b in buttons]

    # --- moving --------------------------------------------------------------------------

    def enter(self, name: str, reason: str, move: bool = True) -> None:
        """Move to a state and do its entry work, following `next` until the bot waits."""
        while name is not None:
            self.steps += 1
            if self.steps > MAX_STEPS_PER_TURN:
                log.error("flow %s: more than %d states in one turn, stopping at %r",
                          self.flow.id, MAX_STEPS_PER_TURN, self.cursor.state)
                self.wait = WAIT_INPUT
                return
            if move:
                self.flow.machine.events[event_name(name)].trigger(self.cursor)
            else:
                self.flow.machine.set_state(name, model=self.cursor)
            move = True
            self.misses = self.retries = 0
            self.path.append(name)
            name, reason = self.entry_work(self.flow.states[name], reason)

    def entry_work(self, state: State, reason: str) -> tuple[Any, str]:
        """Do a state's work; return the state to move on to (or None) and why."""
        self.wait = WAIT_INPUT
        self.escalation = None
        self.reason = reason
        if state.set:
            self.assign(state.set)
        self.say_all(state.say)
        if state.ask:
            self.say_text(state.ask.render(self.context_vars()))
        elif state.call:
            if not self.perform_call(state):
                return state.on_error, reason
        elif state.escalate:
            self.return_to = None  # a detour that reaches a person is over
            self.missed_why = ""
            names = self.context_vars()
            self.escalation = {"queue": state.escalate.queue, "priority":
                               state.escalate.priority, "reason": reason, "state": state.name}
            output = {"type": "escalate", "queue": state.escalate.queue,
                      "priority": state.escalate.priority, "reason": reason,
                      "path": self.path[-MAX_PATH:],
                      "say": [t.render(names) for t in state.escalate.say]}
            note = state.escalate.note.render(names).strip() if state.escalate.note else ""
            if note:  # for the agent, never the visitor; rendered now, with what is known now
                output["note"] = self.escalation["note"] = note[:MAX_NOTE]
            self.outputs.append(output)
            self.wait = WAIT_ESCALATION
            return None, reason
        self.offer(state)
        if state.end:
            self.outputs.append({"type": "end"})
            self.wait = WAIT_NOTHING
            return None, reason
        if state.next and not state.ask:
            return self.choose(state), reason
        return None, reason

    def choose(self, state: State) -> str:
        names = self.context_vars()
        for branch in state.next:
            if branch.when is None or branch.when.test(names):
                return branch.goto
        return state.next[-1].goto  # unreachable: the checker wants a last bare choice

    def perform_call(self, state: State) -> bool:
        """Make the state's HTTP request; return whether it succeeded."""
        call = state.call
        assert call is not None
        names = self.context_vars(secrets=True)
        url = call.url.render(names)
        headers = {key: value.render(names) for key, value in call.headers.items()}
        body = _render_body(call.json, names)
        if call.save:
            # Without an answer nothing is saved, and an earlier answer must not pass for this
            # one: a timeout after a 404 would otherwise read as "not found" (docs/flows.md).
            self.vars.pop(call.save, None)
        if self.context.http is None:
            log.warning("flow %s:%s: no HTTP client, call treated as failed", self.flow.id,
                        state.name)
            return False
        try:
            response = self.context.http.request(call.method, url, headers=headers, json=body,
                                                 timeout=call.timeout)
        except CallError as exc:
            log.info("flow %s:%s: call %s failed: %s", self.flow.id, state.name, call.method,
                     exc)
            return False
        if call.save:
            self.vars[call.save] = {"status": response.status, "json": response.json}
        return response.status < 400

    # --- answering -----------------------------------------------------------------------

    def answer(self, text: str, payload: str | None) -> None:
        state = self.flow.states[self.cursor.state]
        self.input = text
        folded = normalize(text)
        button = _button_for(state, folded, payload)
        if button is not None:
            if button.set:
                self.assign(button.set)
            self.switch(button.locale)
            if button.goto is None:  # it answers the ask, as if the visitor typed its answer
                answer = button.answer_in(self.locale)
                assert answer is not None
                self.input = answer
                self.answer_question(state, answer, normalize(answer), None)
                return
            self.jump(button.goto, button.returns)
            return
        if state.ask:
            self.answer_question(state, text, folded, payload)
            return
        rule = self.first_rule([*self.flow.intents, *state.on], folded, payload)
        if rule is not None:
            self.follow(rule)
            return
        self.not_understood(state)

    def answer_question(self, state: State, text: str, folded: str, payload: str | None) -> None:
        switch = self.language_switch(state, folded)
        if switch is not None:  # "Deutsch" alone is not an answer (docs/flows.md, "Languages")
            self.follow(switch)
            return
        error = None
        if state.validate is None:
            value: Any = text
        else:
            try:
                value = state.validate.check(text, self.region, self.today())
            except Invalid as exc:
                error = state.validate.default_error(exc.key, self.locale)
                if state.validate.message is not None:  # the author's words, when they say any
                    error = state.validate.message.render(self.context_vars()).strip() or error
        if error is None:
            if state.save:
                self.vars[state.save] = value
            if self.return_to:  # back from a detour: not an edge of the flow's graph
                target, self.return_to = self.return_to, None
                self.enter(target, self.reason, move=False)
            else:
                self.enter(self.choose(state), self.reason)
            return
        rule = self.first_rule([*self.flow.intents, *state.on], folded, payload)
        if rule is not None:
            self.follow(rule)
            return
        if self.retries < state.retries:
            self.retries += 1
            self.say_text(error)
            assert state.ask is not None
            self.say_text(state.ask.render(self.context_vars()))
            self.offer(state)
            return
        target = state.on_invalid or self.flow.settings.fallback_to
        assert target is not None  # the checker requires one of them
        self.return_to = None
        self.enter(target, INVALID)

    def first_rule(self, rules: list[Rule], folded: str, payload: str | None) -> Rule | None:
        for rule in rules:
            if rule.matcher == "keywords":
                if any(has_phrase(folded, phrase) for phrase in rule.keywords_in(
                        self.locale, self.flow.settings.fallback_locale)):
                    return rule
            elif rule.matcher == "regex":
                assert rule.regex is not None
                found = rule.regex.search(self.input)
                if found:
                    self.match = (found.group(0), *(g or "" for g in found.groups()))
                    return rule
            elif rule.matcher == "payload":
                if payload is not None and payload == rule.payload:
                    return rule
            elif rule.matcher == "when":
                assert rule.when is not None
                if rule.when.test(self.context_vars()):
                    return rule
            else:
                return rule
        return None

    def language_switch(self, state: State, folded: str) -> Rule | None:
        """Find a rule that switches language whose keyword is the whole message."""
        for rule in (*self.flow.intents, *state.on):
            if rule.locale and rule.matcher == "keywords" and \
                    folded in rule.keywords_in(self.locale, self.flow.settings.fallback_locale):
                return rule
        return None

    def follow(self, rule: Rule) -> None:
        if rule.set:
            self.assign(rule.set)
        self.switch(rule.locale)
        self.say_all(rule.say)
        if not rule.goto:  # it only switches language: the state again, in the new one
            self.enter(self.cursor.state, self.reason, move=False)
            return
        self.jump(rule.goto, rule.returns)

    def switch(self, locale: str | None) -> None:
        """Go on in another of the flow's languages (a button's or a rule's `locale`)."""
        if locale:
            self.locale = locale

    def jump(self, target: str, returns: bool) -> None:
        """Go where the visitor's choice leads; `returns`: come back here after the answer."""
        # a detour to the question the visitor is at already is no detour: it is that question
        self.return_to = self.cursor.state if returns and target != self.cursor.state else None
        self.enter(target, ASKED)

    def not_understood(self, state: State) -> None:
        """Handle input that nothing matched."""
        misses = self.misses + 1
        fallback = self.flow.settings.fallback_to
        if fallback and misses >= self.flow.settings.max_fallbacks:
            self.return_to = None
            self.enter(fallback, FALLBACK)
            return
        otherwise = state.else_
        if otherwise is None:
            self.say_text(builtin("else", self.locale))
        else:
            self.say_all(otherwise.say)  # an else with only a goto moves on silently
        if not (otherwise and otherwise.goto):
            self.offer(state)  # staying: the reply carries this state's buttons again
        if otherwise and otherwise.goto:
            self.return_to = None
            self.enter(otherwise.goto, FALLBACK)
            return
        self.misses = misses


def _button_for(state: State, folded: str, payload: str | None) -> Button | None:
    """Find the button a click (by payload) or a typed title chose."""
    if payload is not None:
        for button in state.buttons:
            if button.payload == payload:
                return button
    for button in state.buttons:
        if folded and folded in button.title_keys:
            return button
    return None


def _render_body(body: Any, names: dict[str, Any]) -> Any:
    if isinstance(body, dict):
        return {key: _render_body(value, names) for key, value in body.items()}
    if isinstance(body, list):
        return [_render_body(value, names) for value in body]
    if hasattr(body, "render"):
        return body.render(names)
    return body
