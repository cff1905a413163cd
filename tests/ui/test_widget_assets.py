"""/widget.js and its stylesheet as a site's visitors download them: types, caching, the size
budget, and nothing in the source that a strict Content-Security-Policy would refuse."""

from __future__ import annotations

import gzip
import re

import pytest

from web import widget

# Not on_cluster: the widget's files alone, no Redis.

BUDGET_BYTES = 20 * 1024  # the widget's whole weight, gzipped (docs/widget.md, "Size")
# What a strict CSP refuses or what would let text become markup: none of it in the widget.
FORBIDDEN = [r"\.innerHTML", r"\.outerHTML", r"insertAdjacentHTML", r"document\.write",
             r"\beval\(", r"new Function", r"setTimeout\(\s*['\"]", r"\.cssText",
             r"setAttribute\(\s*['\"]style", r"javascript:", r"<style", r"\.style\s*="]


@pytest.fixture
def client():
    from app import create_app

    return create_app({"TESTING": True}).test_client()


def test_the_script_is_javascript_cacheable_by_etag_and_loadable_from_any_site(client):
    answer = client.get("/widget.js")
    assert answer.status_code == 200
    assert answer.headers["Content-Type"] == "text/javascript; charset=utf-8"
    assert answer.headers["Cache-Control"] == widget.SCRIPT_CACHE
    assert answer.headers["X-Content-Type-Options"] == "nosniff"
    assert answer.headers["Cross-Origin-Resource-Policy"] == "cross-origin"
    assert "__CSS_VERSION__" not in answer.text
    # one public file for every visitor: a shared cache may keep it, cookies or not
    assert "Cookie" not in answer.headers.get("Vary", "") and "Set-Cookie" not in answer.headers
    again = client.get("/widget.js", headers={"If-None-Match": answer.headers["ETag"]})
    assert again.status_code == 304 and again.data == b""

    zipped = client.get("/widget.js", headers={"Accept-Encoding": "gzip, br"})
    assert zipped.headers["Content-Encoding"] == "gzip"
    assert "Accept-Encoding" in zipped.headers["Vary"]
    assert "Set-Cookie" not in answer.headers and "Set-Cookie" not in zipped.headers
    assert gzip.decompress(zipped.data) == answer.data


def test_the_stylesheet_is_versioned_by_its_content_and_cached_for_good(client):
    script = client.get("/widget.js").text
    path = re.search(r'ORIGIN \+ "(/widget\.css\?v=[0-9a-f]{12})"', script).group(1)
    versioned = client.get(path)
    assert versioned.status_code == 200
    assert versioned.headers["Content-Type"] == "text/css; charset=utf-8"
    assert versioned.headers["Cache-Control"] == widget.STYLE_CACHE
    assert client.get("/widget.css?v=old").headers["Cache-Control"] == widget.UNVERSIONED_CACHE


def test_the_widget_weighs_under_its_budget_gzipped(client):
    script = client.get("/widget.js", headers={"Accept-Encoding": "gzip"}).data
    style = client.get("/widget.css", headers={"Accept-Encoding": "gzip"}).data
    print(f"widget.js: {len(script)} bytes gzipped; widget.css: {len(style)} bytes gzipped")
    assert len(script) <= BUDGET_BYTES
    assert len(script) + len(style) <= BUDGET_BYTES  # the stylesheet fits in the budget too


def test_the_source_uses_nothing_a_strict_policy_refuses_nor_html_from_text():
    source = (widget.WIDGET_DIR / "widget.js").read_text()
    code = re.sub(r"//[^\n]*|/\*.*?\*/", "", source, flags=re.S)  # comments may name them
    assert [pattern for pattern in FORBIDDEN if re.search(pattern, code)] == []
    assert "@import" not in (widget.WIDGET_DIR / "widget.css").read_text()
