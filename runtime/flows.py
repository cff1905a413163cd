"""Hold the flow catalog the service runs: loaded once per app, read by the web layer."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from flask import Flask, current_app

from bots.catalog import load_catalog

if TYPE_CHECKING:
    from bots.catalog import Catalog

log = logging.getLogger(__name__)

EXTENSION = "concierge.catalog"  # the key in app.extensions


def init_app(app: Flask) -> None:
    """Load the flows of FLOWS_DIR into `app`; never raise, so the `flask` commands always run."""
    try:
        catalog = load_catalog(app.config["FLOWS_DIR"])
    except Exception:  # a bug in the loader, not a broken flow: those come back as diagnostics
        log.exception("loading the flows in %s failed", app.config["FLOWS_DIR"])
        catalog = None
    app.extensions[EXTENSION] = catalog


def current_catalog() -> Catalog | None:
    """Return the current app's flow catalog, or None if the flows could not be loaded."""
    return current_app.extensions[EXTENSION]


def unready_reason() -> str | None:
    """Say why the current app's flows cannot serve visitors, or None if they can."""
    catalog = current_catalog()
    if catalog is None:
        return "the flows could not be loaded (see the log)"
    if catalog.errors:
        where = current_app.config["FLOWS_DIR"]
        return f"{len(catalog.errors)} error(s) in the flows in {where}; run `flask flows check`"
    return None
