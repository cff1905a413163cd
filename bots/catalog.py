"""Load every flow of a folder, check it, and keep it fresh while authors edit."""

from __future__ import annotations

import datetime
import gc
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from .checker import check_file
from .flow import Flow
from .machine import build_machine
from .source import Diagnostic

log = logging.getLogger("concierge.flows")


@dataclass
class Catalog:
    """The flows of one folder, by id, with what the checker said of them."""

    directory: Path
    flows: dict[str, Flow] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)
    stamps: dict[Path, float] = field(default_factory=dict)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.is_error]

    def get(self, flow_id: str) -> Flow | None:
        return self.flows.get(flow_id)

    def reload_changed(self) -> list[str]:
        """Reload flows whose files changed; a broken edit keeps the last good version.

        Returns the ids reloaded. Meant for development: it stats every file.
        """
        if _stamps(self.directory) == self.stamps:
            return []
        fresh = load_catalog(self.directory)
        changed = [fid for fid, f in fresh.flows.items()
                   if fid not in self.flows or self.flows[fid].version != f.version]
        for diagnostic in fresh.errors:
            log.error("%s (keeping the last good version)", diagnostic)
        self.flows.update({fid: fresh.flows[fid] for fid in changed})
        self.diagnostics = fresh.diagnostics
        self.stamps = fresh.stamps
        return changed


def flow_files(directory: str | Path) -> list[Path]:
    """List the flow files of a folder (sub-folders are not flows)."""
    folder = Path(directory)
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir()
                  if p.suffix in (".yaml", ".yml") and p.is_file())


def load_flow(path: str | Path) -> tuple[Flow | None, list[Diagnostic]]:
    """Check one file and build its machine."""
    # A load makes tens of thousands of objects that all live on: the collector's passes over
    # them found nothing to free and took half of a 5,000-state load.
    collecting = gc.isenabled()
    gc.disable()
    try:
        flow, diagnostics = check_file(path)
        if flow is not None:
            flow.machine = build_machine(flow)
            _warm_dates(flow)
    finally:
        if collecting:
            gc.enable()
    return flow, diagnostics


def load_catalog(directory: str | Path) -> Catalog:
    """Load and check every flow in `directory`."""
    catalog = Catalog(Path(directory))
    if not catalog.directory.is_dir():
        catalog.diagnostics.append(Diagnostic(str(directory), None, "error",
                                              "no such folder of flows (set FLOWS_DIR)"))
        return catalog
    first_file: dict[str, Path] = {}
    for path in flow_files(directory):
        flow, diagnostics = load_flow(path)
        catalog.diagnostics.extend(diagnostics)
        if flow is None:
            continue
        if flow.id in first_file:
            catalog.diagnostics.append(Diagnostic(
                str(path), None, "error",
                f"flow '{flow.id}' is already defined by {first_file[flow.id]}: give one "
                "of them another name"))
            continue
        first_file[flow.id] = path
        catalog.flows[flow.id] = flow
    if not first_file and not catalog.errors:
        catalog.diagnostics.append(Diagnostic(str(directory), None, "error",
                                              "no flows here: add a .yaml file"))
    catalog.stamps = _stamps(directory)
    return catalog


def _warm_dates(flow: Flow) -> None:
    """Read CLDR's names for a flow's date questions now, not in a visitor's first turn (~50 ms)."""
    if not any(s.validate and s.validate.kind == "date" for s in flow.states.values()):
        return
    from .dates import DateProblem, parse_date  # noqa: PLC0415 - only flows with dates need it

    for locale in flow.locales or ("en",):
        try:
            parse_date("1.1.", locale, datetime.date(2026, 12, 1))
        except DateProblem:
            pass


def _stamps(directory: str | Path) -> dict[Path, float]:
    return {p: os.stat(p).st_mtime for p in flow_files(directory)}
