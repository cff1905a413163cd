"""The security headers of our own pages (the console's, the demo shop): a strict CSP, no
sniffing, no caching."""

from __future__ import annotations

import re

from flask import Response, request

# A Host header we repeat in the policy: a name or address and a port, nothing that could end
# the directive or add another.
HOST = re.compile(r"([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(:[0-9]{1,5})?")
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src {connect}; object-src 'none'; frame-ancestors 'none'; base-uri 'none'; "
    "form-action 'self'"
)


def content_security_policy(host: str) -> str:
    """Return the pages' policy: our own scripts, styles and sockets only, never inline code."""
    sources = ["'self'"]
    if HOST.fullmatch(host):
        # CSP 3 lets 'self' match ws:/wss: of the same host, but Safari before 16 did not. Both
        # schemes: behind a proxy the app cannot tell an https page from an http one.
        sources += [f"ws://{host}", f"wss://{host}"]
    return POLICY.format(connect=" ".join(sources))


def secure(response: Response) -> Response:
    """Add the headers every login, console and shop response carries (the shop carries the
    widget: our own script, stylesheet and socket, so the same strict policy holds)."""
    response.headers["Content-Security-Policy"] = content_security_policy(request.host)
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    response.headers["X-Frame-Options"] = "DENY"  # frame-ancestors, for browsers without CSP 2
    response.headers["Cache-Control"] = "no-store"  # a page with a session or a CSRF token
    return response
