"""Write small flows into a folder, for tests that need a FLOWS_DIR of their own."""

import shutil
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

MINIMAL_FLOW = "start: greet\nstates:\n  greet:\n    say: Hi!\n    end: true\n"
INVALID_FLOW = "start: nowhere\nstates: {a: {say: hi, end: true}}\n"  # `start` names no state


def shipped_flows(directory: Path) -> Path:
    """Copy the shipped default flow and its tests into `directory`; return it.

    Servers under test run this copy, not the project's flows/: a flow a site owner adds there
    (and its mistakes) is checked by the tests of flows/ themselves (tests/bots/test_cli.py),
    not by failing every test that talks to a server.
    """
    (directory / "tests").mkdir(parents=True, exist_ok=True)
    shutil.copy(ROOT / "flows" / "default.yaml", directory / "default.yaml")
    shutil.copy(ROOT / "flows" / "tests" / "default_test.yaml", directory / "tests")
    return directory


def write_flows(directory: Path, **flows: str) -> Path:
    """Write each `name=yaml` as `directory`/name.yaml and return `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in flows.items():
        (directory / f"{name}.yaml").write_text(text)
    return directory
