"""The `flask flows` commands, run through Flask's CLI runner on flows written by each test."""

import json
import logging
import re
import shutil
import textwrap
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import bots.draw
from app import create_app
from bots.draw import INSTALL_HINT
from bots.source import COLON_HINT

ROOT = Path(__file__).resolve().parents[2]

SUPPORT = """\
start: greet
intents:
  - keywords: [human, person]
    goto: handoff
states:
  greet:
    say: "Hi {{ visitor.name or 'there' }}!"
    buttons:
      - {title: Track an order, goto: lookup}
      - {title: Talk to a person, goto: handoff}
  lookup:
    call: {url: "/orders/AB123456", save: order}
    on_error: failed
    next: shipped
  shipped: {say: "Your order is {{ vars.order.json.status }}.", end: true}
  failed: {say: "The lookup failed.", end: true}
  handoff:
    escalate: {queue: support, say: "Connecting you…"}
    no_agents: offline
  offline: {say: "Nobody is here, sorry.", end: true}
"""

SUPPORT_TESTS = """\
flow: support
tests:
  - name: a person is one click away
    steps:
      - click: Talk to a person
      - escalated: support
  - name: wrong greeting
    steps:
      - bot: "Hello!"
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


@pytest.fixture
def flows_dir(tmp_path) -> Path:
    folder = tmp_path / "flows"
    write(folder, "support.yaml", SUPPORT)
    return folder


def flows(folder: Path, *args: str, input: str | None = None, **config):
    """Run `flask flows ARGS` against FLOWS_DIR=folder; return the click Result."""
    app = create_app({"FLOWS_DIR": folder, "TESTING": True, **config})
    return app.test_cli_runner().invoke(args=["flows", *args], input=input)


# --- flows check ----------------------------------------------------------------------------------


def test_check_of_valid_flows_exits_0_with_a_summary(flows_dir):
    result = flows(flows_dir, "check")
    assert result.exit_code == 0, result.output
    assert result.stderr == "checked 1 flow: 0 errors, 0 warnings\n"


def test_check_prints_each_error_on_its_line_and_exits_1(flows_dir):
    broken = write(flows_dir, "broken.yaml", """\
        start: greet
        states:
          greet:
            sya: hi
            buttons:
              - {title: Go, goto: hadnoff}
          handoff:
            escalate: {queue: support, priorty: 1}
            no_agents: greet
        """)
    result = flows(flows_dir, "check")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{broken}:4:5: error: unknown key 'sya' in state 'greet' (did you mean 'say'?)",
        f"{broken}:5:5: error: buttons need a say or an ask in state 'greet': they are shown "
        "with the state's last message",
        f"{broken}:6:27: error: unknown state 'hadnoff' in goto (did you mean 'handoff'?)",
        f"{broken}:8:32: error: unknown key 'priorty' in escalate (did you mean 'priority'?)",
        "checked 2 flows: 4 errors, 0 warnings",
    ]


def test_check_with_only_warnings_exits_0(flows_dir):
    warned = write(flows_dir, "warned.yaml", """\
        start: a
        states:
          a: {say: "{{ visitor.nme }}", end: true}
          lost: {say: lost, end: true}
        """)
    result = flows(flows_dir, "check")
    assert result.exit_code == 0
    assert result.stderr.splitlines() == [
        f"{warned}:3:12: warning: visitor has no field 'nme' in say of state 'a' (did you mean "
        "'name'?)",
        f"{warned}:4:3: warning: state 'lost' is never reached from start 'a'",
        "checked 2 flows: 0 errors, 2 warnings",
    ]


def test_check_of_a_variable_no_state_sets_is_an_error_that_stops_the_server(flows_dir):
    typo = write(flows_dir, "typo.yaml", """\
        start: ask_phone
        states:
          ask_phone:
            ask: "Which number can we call you on?"
            save: phone
            next: thanks
          thanks:
            say: "Thanks, we'll call {{ vars.phone_number }} today."
            end: true
        """)
    result = flows(flows_dir, "check")
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{typo}:8:33: error: variable 'phone_number' is never set by any state (set, save or "
        "call save) (did you mean 'phone'?)",
        "checked 2 flows: 1 error, 0 warnings",
    ]


def test_check_of_named_files_and_a_missing_path(flows_dir, tmp_path):
    other = write(tmp_path, "elsewhere/extra.yaml", "start: a\nstates: {a: {say: hi, end: true}}\n")
    result = flows(flows_dir, "check", str(flows_dir / "support.yaml"), str(other),
                   str(tmp_path / "nope.yaml"))
    assert result.exit_code == 1
    assert result.stderr.splitlines() == [
        f"{tmp_path / 'nope.yaml'}:1:1: error: no such file or folder",
        "checked 2 flows: 1 error, 0 warnings",
    ]


@pytest.mark.parametrize("content", [b"", b"- just\n- a list\n", b"\x89PNG\r\n\x1a\n\xff\x00",
                                     b"start: [unclosed\n", b"a: \x01\n"])
def test_check_reports_unreadable_files_cleanly(flows_dir, content):
    (flows_dir / "bad.yaml").write_bytes(content)
    result = flows(flows_dir, "check")
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert f"{flows_dir / 'bad.yaml'}:" in result.stderr and ": error: " in result.stderr


def test_every_flow_of_the_project_checks_clean():  # flows/: the shipped one, and a site's own
    result = flows(ROOT / "flows", "check")
    assert result.exit_code == 0, result.output
    assert re.fullmatch(r"checked \d+ flows?: 0 errors, 0 warnings\n", result.stderr)


# --- flows test -----------------------------------------------------------------------------------


def test_test_prints_pass_and_fail_lines_and_exits_1_on_failure(flows_dir):
    write(flows_dir, "tests/support_test.yaml", SUPPORT_TESTS)
    result = flows(flows_dir, "test")
    assert result.exit_code == 1
    lines = result.stdout.splitlines()
    assert lines[0] == "PASS a person is one click away"
    assert lines[1].startswith("FAIL wrong greeting  (")
    assert 'step at line 9 (bot: "Hello!"): bot said "Hi there!"' in lines[2]
    assert any('bot: "Hello!"' in line and 'bot said "Hi there!"' in line for line in lines)
    assert lines[-1] == "1 passed, 1 failed"


def test_test_exits_0_when_every_test_passes(flows_dir):
    write(flows_dir, "tests/support_test.yaml", SUPPORT_TESTS.split("  - name: wrong")[0])
    result = flows(flows_dir, "test")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines() == ["PASS a person is one click away", "1 passed, 0 failed"]


def test_test_verbose_lists_the_steps_of_passing_tests(flows_dir):
    write(flows_dir, "tests/support_test.yaml", SUPPORT_TESTS.split("  - name: wrong")[0])
    result = flows(flows_dir, "test", "-v")
    assert "click: \"Talk to a person\"" in result.stdout
    assert "escalated: support" in result.stdout


def test_test_of_a_malformed_test_file_prints_its_errors_and_fails(flows_dir):
    tests = write(flows_dir, "tests/support_test.yaml", """\
        flow: support
        tests:
          - name: typo
            steps:
              - clik: Talk to a person
        """)
    result = flows(flows_dir, "test")
    assert result.exit_code == 1
    assert f"{tests}:5:9: error: unknown step 'clik' (did you mean 'click'?)" in result.stderr
    assert result.stdout.splitlines()[-1] == "0 passed, 1 failed"


def test_test_with_an_empty_tests_folder_is_an_error(flows_dir):
    (flows_dir / "tests").mkdir()
    result = flows(flows_dir, "test")
    assert result.exit_code == 1
    assert f"Error: no test files in {flows_dir / 'tests'}" in result.output


def test_test_without_a_tests_folder_fails(flows_dir):
    result = flows(flows_dir, "test")
    assert result.exit_code == 1
    assert f"{flows_dir / 'tests'}:1:1: error: no such file" in result.stderr


def test_test_of_a_broken_flow_prints_its_errors_and_fails(flows_dir):
    write(flows_dir, "support.yaml", SUPPORT.replace("goto: lookup", "goto: lokup"))
    write(flows_dir, "tests/support_test.yaml", SUPPORT_TESTS)
    result = flows(flows_dir, "test")
    assert result.exit_code == 1
    assert "unknown state 'lokup' in goto (did you mean 'lookup'?)" in result.stderr
    assert "no valid flow 'support' to test" in result.stderr
    assert result.stdout.splitlines()[-1] == "0 passed, 1 failed"


def test_test_of_named_files(flows_dir, tmp_path):
    path = write(tmp_path, "somewhere/t.yaml", SUPPORT_TESTS)
    result = flows(flows_dir, "test", str(path))
    assert result.stdout.splitlines()[-1] == "1 passed, 1 failed"


def test_test_fails_when_a_flow_has_errors_even_if_every_test_passes(flows_dir):
    write(flows_dir, "tests/support_test.yaml", SUPPORT_TESTS.split("  - name: wrong")[0])
    broken = write(flows_dir, "returns.yaml", "start: a\nstates:\n  a: {say: hi, next: b}\n")
    result = flows(flows_dir, "test")
    assert result.exit_code == 1
    assert result.stdout.splitlines() == ["PASS a person is one click away", "1 passed, 0 failed"]
    assert result.stderr.splitlines() == [
        f"{broken}:3:22: error: unknown state 'b' in next",
        f"error: 1 flow file in {flows_dir} has errors (listed above): the server refuses to "
        "start with them, whatever the tests say; fix them (flask flows check)",
    ]


def test_test_prints_unused_answers_as_warnings_and_still_passes(flows_dir):
    tests = write(flows_dir, "tests/support_test.yaml", """\
        flow: support
        tests:
          - name: a person is one click away
            http:
              "GET /orders/AB123456": {json: {status: shipped}}
            steps:
              - click: Talk to a person
        """)
    result = flows(flows_dir, "test")
    assert result.exit_code == 0, result.output
    assert result.stderr == (f"{tests}:5:7: warning: the answer to 'GET /orders/AB123456' is "
                             "never used by test 'a person is one click away': the flow made no "
                             "such request (check the method and url, or remove the answer)\n")


def test_test_runs_the_tests_a_yaml_error_does_not_touch(flows_dir):
    tests = write(flows_dir, "tests/support_test.yaml", """\
        flow: support
        tests:
          - name: broken
            steps:
              - bot: Hi: there
          - name: a person is one click away
            steps:
              - click: Talk to a person
        """)
    result = flows(flows_dir, "test")
    assert result.exit_code == 1
    assert result.stderr == (f"{tests}:5:16: error: YAML syntax: {COLON_HINT}\n")
    assert result.stdout.splitlines() == ["PASS a person is one click away", "1 passed, 1 failed"]


def test_every_flow_of_the_project_passes_its_conversation_tests():
    result = flows(ROOT / "flows", "test")
    assert result.exit_code == 0, result.output
    assert result.stdout.splitlines()[-1].endswith(" passed, 0 failed")


# --- flows chat -----------------------------------------------------------------------------------


def test_chat_from_a_pipe_clicks_buttons_by_number_and_shows_the_escalation(flows_dir):
    result = flows(flows_dir, "chat", "support", input="/state\n2\n/state\n")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "bot> Hi there!" in out
    assert "[1] Track an order" in out and "[2] Talk to a person" in out
    assert "you> /state\nstate: greet (waits for input)" in out
    assert "[escalated to queue 'support' (reason: asked; path: greet > handoff)]" in out
    assert "bot> Connecting you…" in out
    assert "state: handoff (waits for escalation)" in out


def test_chat_with_no_agents_goes_on_at_no_agents(flows_dir):
    result = flows(flows_dir, "chat", "support", "--agents", "0", input="I want a person\n")
    assert result.exit_code == 0, result.output
    assert "  [no agents: nobody of queue 'support' can take the conversation (--agents 0), so " \
           "the bot goes on at no_agents: state 'offline']\nbot> Nobody is here, sorry." \
           in result.output
    assert "escalated" not in result.output
    assert "Connecting you…" not in result.output
    assert "[the conversation has ended]" in result.output


def test_chat_tells_of_an_unknown_command_instead_of_sending_it(flows_dir):
    result = flows(flows_dir, "chat", "support", input="/sate\n/state\n")
    assert "you> /sate\n  [unknown command '/sate' (did you mean '/state'?): nothing was sent. " \
           "/help lists the commands; /say TEXT sends a message that starts with /]\n" \
           "you> /state\nstate: greet (waits for input)" in result.output


def test_chat_tells_of_a_button_number_that_is_not_shown(flows_dir):
    result = flows(flows_dir, "chat", "support", input="3\n/state\n")
    assert "you> 3\n  [there is no button 3: the buttons are 1 to 2. Nothing was sent; /say 3 " \
           "sends 3 as a message]\nyou> /state\nstate: greet (waits for input)" in result.output


def test_chat_say_sends_a_number_as_text(flows_dir):
    result = flows(flows_dir, "chat", "support", input="/say 2\n")
    assert "you> /say 2\nbot> Sorry, I didn't catch that." in result.output
    assert "escalated" not in result.output


def test_chat_sends_numbers_as_text_where_no_buttons_are_shown(flows_dir):
    write(flows_dir, "count.yaml", """\
        start: menu
        states:
          menu:
            say: "Hi!"
            buttons: [{title: Order bikes, goto: how_many}]
          how_many:
            ask: "How many bikes?"
            save: count
            validate: integer
            on_invalid: menu
            next: done
          done: {say: "{{ vars.count }} bikes, noted.", end: true}
        """)
    result = flows(flows_dir, "chat", "count", input="1\n7\n")
    assert "bot> How many bikes?\nyou> 7\nbot> 7 bikes, noted." in result.output


def test_chat_reports_input_after_the_end_and_can_restart(flows_dir):
    result = flows(flows_dir, "chat", "support", "--agents", "0",
                   input="human\nanyone there?\n/restart\n")
    assert "[the conversation has ended]\nyou> anyone there?\n  [the conversation has ended: " \
           '"anyone there?" was not sent. /restart starts again, /quit leaves]\n' \
           "you> /restart\nbot> Hi there!" in result.output


def test_chat_keeps_http_log_lines_out_of_the_transcript(flows_dir, orders_url, caplog):
    with caplog.at_level(logging.INFO):
        result = flows(flows_dir, "chat", "support", input="1\n", SELF_URL=orders_url)
    assert "[GET /orders/AB123456 -> 200]" in result.output
    assert [r.getMessage() for r in caplog.records
            if r.name.split(".")[0] in ("httpx", "httpcore", "concierge")] == []
    assert logging.getLogger("httpx").level == logging.NOTSET  # put back afterwards


def test_chat_noagents_command_after_an_escalation(flows_dir):
    result = flows(flows_dir, "chat", "support", input="human\nhello?\n/noagents\n")
    assert "[a person has the conversation now; /noagents or /restart]" in result.output
    assert "bot> Nobody is here, sorry." in result.output


def test_chat_offline_makes_calls_fail(flows_dir):
    result = flows(flows_dir, "chat", "support", "--offline", input="1\n")
    assert result.exit_code == 0, result.output
    assert "[offline: GET /orders/AB123456 not sent; the call fails]" in result.output
    assert "bot> The lookup failed." in result.output


class _Orders(BaseHTTPRequestHandler):
    authorizations: list[str | None] = []

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - the http.server API
        self.authorizations.append(self.headers.get("Authorization"))
        body = json.dumps({"status": "shipped"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def orders_url() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Orders)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_chat_performs_calls_for_real_against_self_url(flows_dir, orders_url):
    result = flows(flows_dir, "chat", "support", input="Track an order\n", SELF_URL=orders_url)
    assert result.exit_code == 0, result.output
    assert "[GET /orders/AB123456 -> 200]" in result.output
    assert "bot> Your order is shipped." in result.output


def test_chat_sends_flow_secrets_from_the_config(flows_dir, orders_url):
    write(flows_dir, "secret.yaml", """\
        start: lookup
        states:
          lookup:
            call: {url: "/orders/1", headers: {Authorization: "Bearer {{ secrets.TOKEN }}"}}
            on_error: done
            next: done
          done: {say: done, end: true}
        """)
    _Orders.authorizations.clear()
    result = flows(flows_dir, "chat", "secret", input="", SELF_URL=orders_url,
                   FLOW_SECRETS={"TOKEN": "s3cret"})
    assert result.exit_code == 0, result.output
    assert _Orders.authorizations == ["Bearer s3cret"]
    assert "s3cret" not in result.output


def test_chat_commands_vars_restart_help_and_quit(flows_dir):
    result = flows(flows_dir, "chat", "support", "--name", "Ada",
                   input="/help\n/vars\n/restart\n/quit\n2\n")
    out = result.output
    assert out.count("bot> Hi Ada!") == 2
    assert "a number clicks that button" in out
    assert "vars: {}" in out
    assert "escalated" not in out  # nothing is read after /quit


def test_chat_with_a_flow_file_path(flows_dir):
    result = flows(flows_dir, "chat", str(flows_dir / "support.yaml"), input="")
    assert result.exit_code == 0
    assert "Chatting with flow 'support'" in result.output


def test_chat_with_an_unknown_flow_names_the_known_ones(flows_dir):
    result = flows(flows_dir, "chat", "suport")
    assert result.exit_code == 1
    assert f"no flow 'suport' in {flows_dir} (did you mean 'support'?) (flows: support)" \
        in result.output


def test_chat_with_a_broken_flow_prints_its_errors(flows_dir):
    write(flows_dir, "broken.yaml", "start: a\nstates:\n  a: {say: hi, next: nowhere}\n")
    result = flows(flows_dir, "chat", "broken")
    assert result.exit_code == 1
    assert "unknown state 'nowhere' in next" in result.stderr
    assert "flow 'broken' has errors; fix them first (flask flows check)" in result.output


# --- flows draw -----------------------------------------------------------------------------------


def test_draw_as_dot_lists_states_and_edges(flows_dir):
    result = flows(flows_dir, "draw", "support", "--format", "dot")
    assert result.exit_code == 0, result.output
    dot = result.stdout
    assert dot.startswith('digraph "support" {')
    for line in ['"(start)" -> "greet";',
                 '"greet" -> "lookup" [label="button: Track an order"];',
                 '"lookup" -> "failed" [label="error", style=dashed];',
                 '"handoff" -> "offline" [label="no agents", style=dashed];',
                 '"(any waiting state)" -> "handoff" [label="keywords: human,\\nperson", '
                 'style=dotted];']:
        assert line in dot
    assert '"handoff" [label="handoff\\n→ person (support)", shape=hexagon' in dot
    assert '"lookup" [label="lookup\\nGET /orders/AB123456", shape=component' in dot
    assert dot.rstrip().endswith("}")


def test_draw_as_dot_to_a_file(flows_dir, tmp_path):
    target = tmp_path / "support.dot"
    result = flows(flows_dir, "draw", "support", "--format", "dot", "-o", str(target))
    assert result.exit_code == 0
    assert target.read_text().startswith('digraph "support"')


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_draw_writes_an_svg(flows_dir, tmp_path):
    target = tmp_path / "support.svg"
    result = flows(flows_dir, "draw", "support", "-o", str(target))
    assert result.exit_code == 0, result.output
    assert result.output == f"wrote {target}\n"
    svg = target.read_text()
    assert "<svg" in svg and "greet" in svg and "handoff" in svg


@pytest.mark.skipif(shutil.which("dot") is None, reason="Graphviz's dot is not installed")
def test_draw_writes_flow_id_svg_by_default(flows_dir, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = flows(flows_dir, "draw", "support")
    assert result.exit_code == 0, result.output
    assert result.output == "wrote support.svg\n"
    assert "<svg" in (tmp_path / "support.svg").read_text()


def test_draw_without_graphviz_prints_the_install_hint(flows_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(bots.draw.shutil, "which", lambda name: None)
    target = tmp_path / "support.svg"
    result = flows(flows_dir, "draw", "support", "-o", str(target))
    assert result.exit_code == 1
    assert " ".join(INSTALL_HINT.split()) in " ".join(result.output.split())
    assert "apt-get install graphviz" in result.output
    assert not target.exists()


def test_draw_with_an_empty_path_finds_no_graphviz(flows_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    result = flows(flows_dir, "draw", "support", "-o", str(tmp_path / "x.svg"))
    assert result.exit_code == 1
    assert "--format dot" in result.output


def test_chat_shows_the_escalations_note_for_the_agent(flows_dir):
    write(flows_dir, "noted.yaml", """\
        name: noted
        start: ask_email
        states:
          ask_email: {ask: "Email?", save: email, next: handoff}
          handoff:
            escalate: {queue: support, note: "Write to {{ vars.email }}"}
            no_agents: bye
          bye: {say: bye, end: true}
        """)
    result = flows(flows_dir, "chat", "noted", input="ada@example.com\n")
    assert result.exit_code == 0, result.output
    assert "(reason: flow; path: ask_email > handoff)]\n  [note for the agent: Write to " \
           "ada@example.com]\n" in result.output


BILINGUAL = """\
    locales: [en, de]
    start: ask_day
    settings: {fallback_to: human}
    intents:
      - {keywords: [person], goto: human}
    states:
      ask_day:
        ask: {en: "Which day?", de: "Welcher Tag?"}
        save: day
        validate: {date: true, future: true}
        next: done
      done:
        say: {en: "See you {{ vars.day | date }}.", de: "Bis {{ vars.day | date }}."}
        end: true
      human:
        escalate: support
        no_agents: missed
      missed:
        say: "{{ missed }}"
        end: true
    """


def test_chat_speaks_the_locale_it_is_given_and_plays_a_fixed_day(flows_dir):
    write(flows_dir, "days.yaml", BILINGUAL)
    result = flows(flows_dir, "chat", "days", "--locale", "de-AT", "--today", "2026-12-01",
                   input="morgen\n")
    assert result.exit_code == 0, result.output
    assert "bot> Welcher Tag?" in result.output
    assert "bot> Bis Mittwoch, 2. Dezember 2026." in result.output


def test_chat_locale_command_plays_a_page_reloaded_in_another_language(flows_dir):
    write(flows_dir, "days.yaml", BILINGUAL)
    result = flows(flows_dir, "chat", "days", "--locale", "de", "--today", "2026-12-01",
                   input="/locale en-GB\n/state\ntomorrow\n")
    assert "[the visitor's locale is now en-GB: the bot answers the next message in en]" \
        in result.output
    assert "state: ask_day (waits for input, in de)" in result.output  # until the next answer
    assert "bot> See you Wednesday, 2 December 2026." in result.output  # as en-GB writes it
    bad = flows(flows_dir, "chat", "days", "--locale", "Deutsch!", input="")
    assert bad.exit_code == 2 and "'Deutsch!' is not a language tag" in bad.output


def test_chat_leave_command_goes_on_as_a_visitor_who_left_the_queue(flows_dir):
    write(flows_dir, "days.yaml", BILINGUAL)
    result = flows(flows_dir, "chat", "days", input="person\n/leave\n")
    assert "/leave: as if the visitor left the queue" in result.output
    assert "bot> left_queue" in result.output
