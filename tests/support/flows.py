"""Write small flows into a folder, for tests that need a FLOWS_DIR of their own."""

from pathlib import Path

MINIMAL_FLOW = "start: greet\nstates:\n  greet:\n    say: Hi!\n    end: true\n"
INVALID_FLOW = "start: nowhere\nstates: {a: {say: hi, end: true}}\n"  # `start` names no state


def write_flows(directory: Path, **flows: str) -> Path:
    """Write each `name=yaml` as `directory`/name.yaml and return `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, text in flows.items():
        (directory / f"{name}.yaml").write_text(text)
    return directory
