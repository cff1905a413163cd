"""Load every flow of a folder (stub, being written)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class Catalog:
    flows: dict = field(default_factory=dict)
    diagnostics: list = field(default_factory=list)

    @property
    def errors(self) -> list:
        return [d for d in self.diagnostics if d.severity == "error"]


def load_catalog(directory: str | Path) -> Catalog:
    """Load and check every flow in `directory` (stub)."""
    return Catalog()
