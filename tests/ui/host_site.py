"""Someone else's website carrying the widget: pages on an origin of their own (another port of
127.0.0.1), each sent with the strict Content-Security-Policy docs/widget.md tells site owners to
add, allowing Concierge's origin and nothing `unsafe-*`."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from html import escape
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit


def widget_policy(concierge: str, *, own_scripts: bool = False) -> str:
    """The host page's whole policy: the three lines of docs/widget.md, all else shut."""
    parts = urlsplit(concierge)
    socket_origin = ("wss://" if parts.scheme == "https" else "ws://") + parts.netloc
    scripts = f"'self' {concierge}" if own_scripts else concierge
    return (f"default-src 'none'; script-src {scripts}; style-src {concierge}; "
            f"connect-src {socket_origin}; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


@dataclass
class HostPage:
    concierge: str  # the base URL the page's script tag loads /widget.js from
    attributes: dict[str, str] = field(default_factory=dict)  # the script tag's data-…
    settings: dict | None = None  # window.ConciergeSettings, set by a script of the site's own
    title: str = "A shop somewhere else"
    policy: str | None = None  # instead of widget_policy's

    def html(self, path: str) -> str:
        data = "".join(f' data-{escape(name)}="{escape(value)}"'
                       for name, value in self.attributes.items())
        settings = f'<script src="{path}.settings.js"></script>' if self.settings else ""
        return (f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
                f'<meta name="viewport" content="width=device-width, initial-scale=1">'
                f"<title>{escape(self.title)}</title></head><body>"
                f"<main><h1>{escape(self.title)}</h1><p>Nothing to see but the chat.</p></main>"
                f'{settings}<script src="{self.concierge}/widget.js"{data} async></script>'
                "</body></html>")


class HostSite:
    """A threaded HTTP server on 127.0.0.1 serving the pages put on it with `page()`."""

    def __init__(self) -> None:
        self.pages: dict[str, HostPage] = {}
        site = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the name http.server calls
                path = urlsplit(self.path).path
                settings = path.endswith(".settings.js")
                page = site.pages.get(path.removesuffix(".settings.js"))
                if page is None or (settings and page.settings is None):
                    self.send_response(404 if path != "/favicon.ico" else 204)
                    self.end_headers()
                    return
                if settings:
                    body = f"window.ConciergeSettings = {json.dumps(page.settings)};\n"
                    kind = "text/javascript"
                else:
                    body, kind = page.html(path), "text/html; charset=utf-8"
                self.send_response(200)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Security-Policy", page.policy or widget_policy(
                    page.concierge, own_scripts=page.settings is not None))
                self.send_header("Cache-Control", "no-store")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *_args) -> None:  # quiet: pytest shows failures, not hits
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.origin = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def page(self, concierge: str, path: str | None = None, **options) -> str:
        """Put a page carrying the widget of `concierge` on the site; return its URL."""
        path = path or f"/page-{len(self.pages) + 1}"
        self.pages[path] = HostPage(concierge, **options)
        return self.origin + path

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
