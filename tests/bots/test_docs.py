"""The manual's examples work: every flow in docs/flows.md checks clean, and every conversation
test in it passes against the flow it names."""

import re
from pathlib import Path

import pytest

from bots.checker import check_text
from bots.convtest import run_file
from bots.machine import build_machine

MANUAL = Path(__file__).resolve().parents[2] / "docs" / "flows.md"
BLOCK = re.compile(r"^```yaml\n(.*?)^```", re.MULTILINE | re.DOTALL)


def blocks() -> tuple[list[str], list[str]]:
    """The manual's YAML blocks: (flows, conversation test files)."""
    flows, tests = [], []
    for text in BLOCK.findall(MANUAL.read_text("utf-8")):
        body = [line for line in text.splitlines() if line.strip() and not line.startswith("#")]
        (tests if body and body[0].startswith("flow:") else flows).append(text)
    return flows, tests


FLOWS, TESTS = blocks()


def checked_flows():
    flows = {}
    for text in FLOWS:
        flow, found = check_text(text, "docs/flows.md")
        assert flow is not None, "\n".join(str(d) for d in found) + "\n" + text
        flow.machine = build_machine(flow)
        flows[flow.id] = flow
    return flows


def test_the_manual_has_flows_and_tests():
    assert len(FLOWS) > 10 and len(TESTS) >= 2


@pytest.mark.parametrize("text", FLOWS, ids=lambda t: re.search(r"name: (\S+)", t).group(1))
def test_each_flow_of_the_manual_checks_clean(text):
    flow, found = check_text(text, "docs/flows.md")
    assert flow is not None and not found, "\n".join(str(d) for d in found)


@pytest.mark.parametrize("text", TESTS, ids=lambda t: re.search(r"flow: (\S+)", t).group(1))
def test_each_conversation_test_of_the_manual_passes(text, tmp_path):
    path = tmp_path / "example_test.yaml"
    path.write_text(text, "utf-8")
    outcomes, problems = run_file(path, checked_flows())
    assert outcomes and not problems, [str(p) for p in problems]
    failed = [o.report() for o in outcomes if not o.passed]
    assert not failed, "\n".join(failed)
