"""The `flask flows` commands: check, chat, test and draw flows.

The one module of bots/ that imports Flask: it reads FLOWS_DIR and the other
settings from the app's config, so the tools see what the server sees.
"""

from __future__ import annotations

import datetime
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click
from flask import current_app
from flask.cli import AppGroup

from . import engine
from .calls import CallError, Response, WebClient
from .catalog import flow_files, load_catalog, load_flow
from .checker import suggest
from .convtest import run_file, test_files
from .draw import DrawError, to_dot, to_svg
from .flow import Flow
from .handoff import settle
from .locales import canonical, pick
from .source import Diagnostic

flows_cli = AppGroup("flows", help="Check, chat with, test and draw the bot's flows.")

# Loggers whose INFO lines repeat, in the middle of a transcript, what the tools show already:
# each HTTP request (httpx) and each failed call (concierge.flows).
CHATTY_LOGGERS = ("httpx", "httpcore", "concierge.flows")


@contextmanager
def _quiet_logs() -> Iterator[None]:
    """Keep INFO log lines out of the tools' output; warnings and errors still show."""
    loggers = [logging.getLogger(name) for name in CHATTY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(max(logger.getEffectiveLevel(), logging.WARNING))
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def _flows_dir() -> Path:
    return Path(current_app.config.get("FLOWS_DIR", "flows"))


def _print_diagnostics(diagnostics: list[Diagnostic]) -> None:
    for diagnostic in diagnostics:
        click.echo(str(diagnostic), err=True)


def _resolve(flow: str) -> Flow:
    """Find a flow by id in FLOWS_DIR, or by path; exit with its errors if it has any."""
    if flow.endswith((".yaml", ".yml")) or "/" in flow:
        loaded, diagnostics = load_flow(flow)
        problems = diagnostics
    else:
        catalog = load_catalog(_flows_dir())
        loaded = catalog.get(flow)
        problems = [d for d in catalog.diagnostics if d.is_error]
        if loaded is None and not any(Path(d.path).stem == flow for d in problems):
            known = ", ".join(sorted(catalog.flows)) or "none"
            raise click.ClickException(f"no flow '{flow}' in {_flows_dir()}"
                                       f"{suggest(flow, catalog.flows)} (flows: {known})")
        problems = [d for d in problems if loaded is None and Path(d.path).stem == flow]
    if loaded is None:
        _print_diagnostics([d for d in problems if d.is_error])
        raise click.ClickException(f"flow '{flow}' has errors; fix them first "
                                   "(flask flows check)")
    return loaded


@flows_cli.command("check")
@click.argument("paths", nargs=-1, type=click.Path())
def check(paths: tuple[str, ...]) -> None:
    """Validate flows (all of FLOWS_DIR by default); exit 1 on any error."""
    targets = [Path(p) for p in paths] or [_flows_dir()]
    diagnostics: list[Diagnostic] = []
    count = 0
    for target in targets:
        if target.is_dir():
            catalog = load_catalog(target)
            count += len(flow_files(target))
            diagnostics += catalog.diagnostics
        elif target.exists():
            count += 1
            diagnostics += load_flow(target)[1]
        else:
            diagnostics.append(Diagnostic(str(target), None, "error", "no such file or folder"))
    _print_diagnostics(diagnostics)
    errors = sum(d.is_error for d in diagnostics)
    warnings = len(diagnostics) - errors
    click.echo(f"checked {count} flow{'s' if count != 1 else ''}: {errors} error"
               f"{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}",
               err=True)
    if errors:
        sys.exit(1)


@flows_cli.command("test")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("-v", "--verbose", is_flag=True, help="Show each step of passing tests too.")
def test(paths: tuple[str, ...], verbose: bool) -> None:
    """Run conversation tests (FLOWS_DIR/tests by default); exit 1 on any failure."""
    catalog = load_catalog(_flows_dir())
    _print_diagnostics(catalog.errors)
    files = test_files(paths or [_flows_dir() / "tests"])
    if not files:
        raise click.ClickException(f"no test files in {', '.join(paths) or _flows_dir() / 'tests'}")
    passed = failed = 0
    for path in files:
        if not path.exists():
            _print_diagnostics([Diagnostic(str(path), None, "error", "no such file")])
            failed += 1
            continue
        with _quiet_logs():
            outcomes, problems = run_file(path, catalog.flows)
        _print_diagnostics(problems)
        failed += any(d.is_error for d in problems)
        for outcome in outcomes:
            if outcome.passed:
                passed += 1
                click.echo(f"PASS {outcome.case.name}")
                if verbose:
                    for expected, _actual, _ in outcome.rows:
                        click.echo(f"       {expected}")
            else:
                failed += 1
                click.echo(outcome.report())
    click.echo(f"{passed} passed, {failed} failed")
    broken = sorted({d.path for d in catalog.errors})
    if broken:
        click.echo(f"error: {_count(len(broken), 'flow file')} in {_flows_dir()} "
                   f"{'has' if len(broken) == 1 else 'have'} errors (listed above): the server "
                   "refuses to start with them, whatever the tests say; fix them (flask flows "
                   "check)", err=True)
    if failed or broken:
        sys.exit(1)


def _count(number: int, thing: str) -> str:
    return f"{number} {thing}{'' if number == 1 else 's'}"


class _Shown:
    """Wrap the HTTP client of `flows chat` to show each request, or refuse it offline."""

    def __init__(self, client: WebClient | None) -> None:
        self.client = client

    def request(self, method: str, url: str, **kwargs: Any) -> Response:
        if self.client is None:
            click.secho(f"  [offline: {method} {url} not sent; the call fails]", fg="yellow")
            raise CallError("offline")
        try:
            response = self.client.request(method, url, **kwargs)
        except CallError as exc:
            click.secho(f"  [{method} {url} failed: {exc}]", fg="yellow")
            raise
        click.secho(f"  [{method} {url} -> {response.status}]", fg="yellow")
        return response


@flows_cli.command("chat")
@click.argument("flow")
@click.option("--offline", is_flag=True, help="Do not make the flow's HTTP calls; they fail.")
@click.option("--name", default=None, help="The visitor's name, as a signed-in visitor.")
@click.option("--agents", default=1, show_default=True,
              help="Agents the chat pretends are available; with 0 an escalation goes on at "
                   "no_agents.")
@click.option("--locale", default=None, metavar="TAG",
              help="The visitor's language, as a widget sends it (en, de, de-CH, ...).")
@click.option("--today", default=None, metavar="YYYY-MM-DD", type=click.DateTime(["%Y-%m-%d"]),
              help="The day the chat plays on, for flows with dates (default: today).")
def chat(flow: str, offline: bool, name: str | None, agents: int, locale: str | None,
         today: datetime.datetime | None) -> None:
    """Talk to a flow in the terminal (works from a pipe too)."""
    loaded = _resolve(flow)
    if locale is not None and canonical(locale) is None:
        raise click.BadParameter(f"'{locale}' is not a language tag: write one like en, de or "
                                 "de-CH", param_hint="--locale")
    client = None if offline else WebClient(current_app.config.get("SELF_URL",
                                                                   "http://127.0.0.1:5000"))
    visitor: dict[str, Any] = {"name": name, "verified": False} if name else {"verified": False}
    if locale:
        visitor["locale"] = locale
    context = engine.Context(visitor=visitor, http=_Shown(client),
                             secrets=current_app.config.get("FLOW_SECRETS", {}),
                             today=today.date() if today else None)
    interactive = sys.stdin.isatty()
    click.secho(f"Chatting with flow '{loaded.id}'. Type /help for commands.", dim=True)
    session = _ChatSession(loaded, context, agents)
    stream = sys.stdin
    with _quiet_logs():
        session.show(engine.start(loaded, context))
        while not session.quit:
            if interactive:
                click.echo("you> ", nl=False)
            line = stream.readline()
            if not line:
                break
            if not interactive:
                click.echo(f"you> {line.rstrip()}")
            session.handle(line.strip())
    if client is not None:
        client.close()


class _ChatSession:
    """The terminal side of `flows chat`."""

    HELP = ("/quit leave · /restart start over · /state where the bot is · /vars the variables"
            " · /noagents go on as if nobody were available · /leave leave the queue to leave a "
            "message · /locale TAG the visitor's page changes language · /say TEXT send TEXT "
            "as it is (a number, or text starting with /) · a number clicks that button")
    COMMANDS = ("/help", "/quit", "/exit", "/restart", "/state", "/vars", "/noagents", "/leave",
                "/locale", "/say")

    def __init__(self, flow: Flow, context: engine.Context, agents: int) -> None:
        self.flow = flow
        self.context = context
        self.agents = agents
        self.stored: dict[str, Any] = {}
        self.buttons: list[dict[str, str]] = []  # those shown with the bot's latest messages
        self.quit = False

    def show(self, turn: engine.Turn) -> None:
        turn = settle(self.flow, turn, self.context, lambda _: self.agents > 0)
        self.stored = turn.stored
        if any(output["type"] == "message" for output in turn.outputs):
            self.buttons = []
        for output in turn.outputs:
            if output["type"] == "message":
                click.echo(f"bot> {output['text']}")
                if output.get("buttons"):
                    self.buttons = output["buttons"]
                    for number, button in enumerate(self.buttons, 1):
                        click.echo(f"     [{number}] {button['title']}")
            elif output["type"] == "escalate" and not output["taken"]:
                escalating = self.flow.states[output["path"][-1]]
                click.secho(f"  [no agents: nobody of queue '{output['queue']}' can take the "
                            f"conversation (--agents {self.agents}), so the bot goes on at "
                            f"no_agents: state '{escalating.no_agents}']", fg="cyan")
            elif output["type"] == "escalate":
                click.secho(f"  [escalated to queue '{output['queue']}' (reason: "
                            f"{output['reason']}; path: {' > '.join(output['path'])})]",
                            fg="cyan")
                if output.get("note"):
                    click.secho(f"  [note for the agent: {output['note']}]", fg="cyan")
                for text in output["say"]:
                    click.echo(f"bot> {text}")
                click.secho("  [a person takes over here. /noagents: go on as if nobody "
                            "were available · /leave: as if the visitor left the queue · "
                            "/restart · /quit]", fg="cyan")
            elif output["type"] == "end":
                click.secho("  [the conversation has ended]", fg="cyan")

    def handle(self, line: str) -> None:
        command, _, rest = line.partition(" ")
        if line in ("/quit", "/exit"):
            self.quit = True
        elif line == "/help":
            click.echo(self.HELP)
        elif line == "/restart":
            self.buttons = []
            self.show(engine.start(self.flow, self.context))
        elif line == "/state":
            language = f", in {self.stored['locale']}" if self.stored.get("locale") else ""
            click.echo(f"state: {self.stored['state']} (waits for {self.stored['wait']}"
                       f"{language})")
        elif command == "/locale":
            self.relocate(rest.strip())
        elif line == "/vars":
            click.echo(f"vars: {self.stored['vars']}")
        elif line in ("/noagents", "/leave"):
            if self.stored.get("wait") != engine.WAIT_ESCALATION:
                click.echo("the bot has not escalated")
            else:
                why = "left_queue" if line == "/leave" else "no_agents"
                self.show(engine.no_agents(self.flow, self.stored, self.context, why))
        elif command == "/say":
            self.send(rest.strip())
        elif line.startswith("/"):
            hint = suggest(command, self.COMMANDS)
            self.note(f"unknown command '{command}'{hint}: nothing was sent. /help lists the "
                      "commands; /say TEXT sends a message that starts with /")
        elif line.isdigit() and self.buttons:
            if 1 <= int(line) <= len(self.buttons):
                button = self.buttons[int(line) - 1]
                self.send(button["title"], button["payload"])
            else:
                self.note(f"there is no button {line}: the buttons are 1 to "
                          f"{len(self.buttons)}. Nothing was sent; /say {line} sends {line} "
                          "as a message")
        elif line:
            self.send(line)

    def send(self, text: str, payload: str | None = None) -> None:
        if not text:
            self.note("nothing to send: /say TEXT sends TEXT")
        elif self.stored.get("wait") == engine.WAIT_NOTHING:
            self.note(f'the conversation has ended: "{text}" was not sent. /restart starts '
                      "again, /quit leaves")
        elif self.stored.get("wait") == engine.WAIT_ESCALATION:
            self.note("a person has the conversation now; /noagents or /restart")
        else:
            self.show(engine.reply(self.flow, self.stored, text, payload, self.context))

    def relocate(self, tag: str) -> None:
        if canonical(tag) is None:
            self.note(f"'{tag}' is not a language tag: /locale de, /locale en-GB, ...")
            return
        visitor = dict(self.context.visitor)
        visitor["locale"] = tag
        self.context.visitor = visitor
        if self.flow.locales:
            self.note(f"the visitor's locale is now {tag}: the bot answers the next message in "
                      f"{pick(tag, self.flow.locales)}")
        else:
            self.note(f"the visitor's locale is now {tag}; this flow speaks one language "
                      "(it has no locales)")

    @staticmethod
    def note(text: str) -> None:
        click.secho(f"  [{text}]", fg="cyan")


@flows_cli.command("draw")
@click.argument("flow")
@click.option("-o", "--output", type=click.Path(), help="Where to write (default FLOW.svg).")
@click.option("--format", "fmt", type=click.Choice(["svg", "dot"]), default="svg",
              show_default=True, help="svg needs Graphviz; dot prints the graph as text.")
def draw(flow: str, output: str | None, fmt: str) -> None:
    """Draw a flow as a graph of states, buttons, rules and escalations."""
    loaded = _resolve(flow)
    dot_text = to_dot(loaded)
    if fmt == "dot":
        if output:
            Path(output).write_text(dot_text, encoding="utf-8")
        else:
            click.echo(dot_text, nl=False)
        return
    try:
        svg = to_svg(dot_text)
    except DrawError as exc:
        raise click.ClickException(str(exc)) from None
    target = Path(output or f"{loaded.id}.svg")
    target.write_bytes(svg)
    click.echo(f"wrote {target}")
