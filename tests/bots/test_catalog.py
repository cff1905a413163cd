"""Loading a folder of flows, reloading edited ones, and the state machine of each flow."""

import os
import textwrap

import pytest
from transitions import MachineError

from bots import engine
from bots.catalog import flow_files, load_catalog, load_flow
from bots.machine import Cursor, event_name

from .helpers import make_flow

GOOD = """\
start: a
states:
  a: {say: "version one", buttons: [{title: Go, goto: b}]}
  b: {say: "b one", end: true}
"""
GOOD_EDITED = """\
start: a
states:
  a: {say: "version two", buttons: [{title: Go, goto: c}]}
  c: {say: "c two", end: true}
"""
BROKEN = """\
start: a
states:
  a: {say: "version three", buttons: [{title: Go, goto: nowhere}]}
"""


def write(path, text: str, tick: int) -> None:
    """Write a flow file with an mtime `tick` seconds on, so every edit is seen."""
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    os.utime(path, (1_700_000_000 + tick, 1_700_000_000 + tick))


def test_a_folder_loads_each_valid_flow_by_id(tmp_path):
    write(tmp_path / "support.yaml", GOOD, 0)
    write(tmp_path / "sales.yml", "name: shop\n" + GOOD, 0)
    (tmp_path / "notes.txt").write_text("not a flow")
    (tmp_path / "tests").mkdir()
    write(tmp_path / "tests" / "nested.yaml", GOOD, 0)
    catalog = load_catalog(tmp_path)
    assert sorted(catalog.flows) == ["shop", "support"]
    assert catalog.diagnostics == []
    assert [p.name for p in flow_files(tmp_path)] == ["sales.yml", "support.yaml"]


def test_a_broken_flow_is_left_out_with_its_errors(tmp_path):
    write(tmp_path / "good.yaml", GOOD, 0)
    write(tmp_path / "bad.yaml", BROKEN, 0)
    catalog = load_catalog(tmp_path)
    assert list(catalog.flows) == ["good"]
    assert [str(d) for d in catalog.errors] == [
        f"{tmp_path / 'bad.yaml'}:3:57: error: unknown state 'nowhere' in goto"]


def test_two_files_with_the_same_flow_name_is_an_error(tmp_path):
    write(tmp_path / "a.yaml", "name: same\n" + GOOD, 0)
    write(tmp_path / "b.yaml", "name: same\n" + GOOD, 0)
    catalog = load_catalog(tmp_path)
    assert list(catalog.flows) == ["same"]
    assert "flow 'same' is already defined by" in str(catalog.errors[0])


def test_an_empty_or_missing_folder_is_an_error(tmp_path):
    assert "no flows here" in str(load_catalog(tmp_path).errors[0])
    assert "no such folder of flows" in str(load_catalog(tmp_path / "nope").errors[0])


def test_reload_picks_up_an_edited_file(tmp_path):
    path = tmp_path / "support.yaml"
    write(path, GOOD, 0)
    catalog = load_catalog(tmp_path)
    first = catalog.get("support")
    assert catalog.reload_changed() == []
    write(path, GOOD_EDITED, 1)
    assert catalog.reload_changed() == ["support"]
    second = catalog.get("support")
    assert second.version != first.version
    assert engine.start(second).messages == ["version two"]


def test_reload_picks_up_a_new_file(tmp_path):
    write(tmp_path / "support.yaml", GOOD, 0)
    catalog = load_catalog(tmp_path)
    write(tmp_path / "sales.yaml", GOOD, 1)
    assert catalog.reload_changed() == ["sales"]
    assert sorted(catalog.flows) == ["sales", "support"]


def test_a_broken_edit_keeps_the_last_good_version(tmp_path, caplog):
    path = tmp_path / "support.yaml"
    write(path, GOOD, 0)
    catalog = load_catalog(tmp_path)
    good = catalog.get("support")
    write(path, BROKEN, 1)
    assert catalog.reload_changed() == []
    assert catalog.get("support") is good
    assert "unknown state 'nowhere'" in str(catalog.errors[0])
    assert "keeping the last good version" in caplog.text
    write(path, GOOD_EDITED, 2)
    assert catalog.reload_changed() == ["support"]
    assert catalog.errors == []
    assert engine.start(catalog.get("support")).messages == ["version two"]


def test_a_conversation_runs_on_the_reloaded_version_at_its_next_turn(tmp_path):
    path = tmp_path / "support.yaml"
    write(path, GOOD, 0)
    catalog = load_catalog(tmp_path)
    stored = engine.start(catalog.get("support")).stored
    write(path, GOOD_EDITED, 1)
    catalog.reload_changed()
    assert engine.reply(catalog.get("support"), stored, "Go").messages == ["c two"]


def test_load_flow_builds_the_machine(tmp_path):
    write(tmp_path / "f.yaml", GOOD, 0)
    flow, found = load_flow(tmp_path / "f.yaml")
    assert found == [] and flow.machine is not None


# --- the state machine -------------------------------------------------------------------------

MACHINE = """\
start: menu
intents:
  - keywords: [bye]
    goto: bye
states:
  menu:
    say: "Menu"
    buttons: [{title: Ask, goto: ask}]
  ask: {ask: "Name?", save: name, next: hello}
  hello: {say: "Hello", next: bye}
  bye: {say: "Bye", end: true}
"""


def test_the_machine_follows_the_flows_edges():
    flow = make_flow(MACHINE)
    cursor = Cursor("menu")
    flow.machine.events[event_name("ask")].trigger(cursor)
    assert cursor.state == "ask"
    flow.machine.events[event_name("bye")].trigger(cursor)  # an intent, from a waiting state
    assert cursor.state == "bye"


def test_the_machine_refuses_an_edge_the_flow_does_not_have():
    flow = make_flow(MACHINE)
    cursor = Cursor("menu")
    with pytest.raises(MachineError):
        flow.machine.events[event_name("hello")].trigger(cursor)
    assert cursor.state == "menu"


def test_the_machine_refuses_intents_from_a_state_that_does_not_wait():
    flow = make_flow(MACHINE)
    cursor = Cursor("hello")
    with pytest.raises(MachineError):
        flow.machine.events[event_name("ask")].trigger(cursor)


def test_the_machine_has_no_event_for_an_unknown_state():
    flow = make_flow(MACHINE)
    assert event_name("nowhere") not in flow.machine.events
