"""Serve the embeddable widget to any site: /widget.js and its stylesheet, cacheable and small."""

from __future__ import annotations

import gzip
import hashlib
from dataclasses import dataclass
from pathlib import Path

from flask import Blueprint, Response, request

bp = Blueprint("widget", __name__)

WIDGET_DIR = Path(__file__).parent / "static" / "widget"
CSS_VERSION_MARK = "__CSS_VERSION__"  # in widget.js: replaced by the stylesheet's version
# Sites embed the unversioned /widget.js: an hour until a new release reaches their visitors,
# and a day more of the old one while it is fetched again (its ETag makes that a 304).
SCRIPT_CACHE = "public, max-age=3600, stale-while-revalidate=86400"
# The stylesheet's URL names its version (a hash of its content), so it never changes.
STYLE_CACHE = "public, max-age=31536000, immutable"
UNVERSIONED_CACHE = "public, max-age=300"  # an old or hand-written ?v=: a short while only


@dataclass(frozen=True)
class Asset:
    body: bytes
    gzipped: bytes
    etag: str


@dataclass(frozen=True)
class Assets:
    script: Asset
    style: Asset
    style_version: str


_cache: dict[tuple[float, float], Assets] = {}


def _asset(body: bytes) -> Asset:
    return Asset(body, gzip.compress(body, 9, mtime=0), hashlib.sha256(body).hexdigest()[:20])


def assets() -> Assets:
    """Read both files, once per change of either (a deploy, or an edit in development)."""
    script_path, style_path = WIDGET_DIR / "widget.js", WIDGET_DIR / "widget.css"
    key = (script_path.stat().st_mtime, style_path.stat().st_mtime)
    if key not in _cache:
        style = style_path.read_bytes()
        version = hashlib.sha256(style).hexdigest()[:12]
        script = script_path.read_text(encoding="utf-8").replace(CSS_VERSION_MARK, version)
        _cache.clear()
        _cache[key] = Assets(_asset(script.encode()), _asset(style), version)
    return _cache[key]


def _serve(asset: Asset, mimetype: str, cache: str) -> Response:
    zipped = "gzip" in request.headers.get("Accept-Encoding", "").lower()
    response = Response(asset.gzipped if zipped else asset.body, mimetype=mimetype)
    if zipped:
        response.headers["Content-Encoding"] = "gzip"
    response.set_etag(asset.etag + ("-gz" if zipped else ""))
    response.headers["Cache-Control"] = cache
    response.headers["Vary"] = "Accept-Encoding"
    response.headers["X-Content-Type-Options"] = "nosniff"
    # Loaded by other sites' pages: also by those that isolate themselves (COEP) or use SRI.
    response.headers["Cross-Origin-Resource-Policy"] = "cross-origin"
    response.headers["Access-Control-Allow-Origin"] = "*"
    return response.make_conditional(request)


@bp.get("/widget.js")
def script() -> Response:
    """Serve the widget's script (its stylesheet's version written in)."""
    return _serve(assets().script, "text/javascript", SCRIPT_CACHE)


@bp.get("/widget.css")
def style() -> Response:
    """Serve the widget's stylesheet, for good when asked for by its version."""
    current = assets()
    cache = STYLE_CACHE if request.args.get("v") == current.style_version else UNVERSIONED_CACHE
    return _serve(current.style, "text/css", cache)
