"""Serve the plain HTTP endpoints: health, readiness, the demo shop and its backend."""

import re
from datetime import date, timedelta

from flask import Blueprint, Response, current_app, make_response, render_template, request

from runtime import flows
from runtime import wiring as live

from . import headers

bp = Blueprint("web", __name__, template_folder="templates")


@bp.get("/healthz")
def healthz() -> dict:
    """Answer 200 while the process runs."""
    return {"status": "ok"}


@bp.get("/readyz")
def readyz() -> tuple[dict, int]:
    """Answer 200 when the config is valid, Redis (or the Redis Cluster) can serve and the flows
    loaded, else 503 and why."""
    problems = current_app.config.get("CONFIG_PROBLEMS")
    reason = f"invalid configuration: {'; '.join(problems)}" if problems else flows.unready_reason()
    services = live.current_live()
    if reason is None and services is None:
        reason = "no Redis configured (set REDIS_URL, or start with gunicorn for the embedded one)"
    elif reason is None:
        # One Redis: it answers a PING. A cluster: a node says every slot is served.
        reason = services.redis_unready_reason()
    if reason is not None:
        return {"ready": False, "reason": reason}, 503
    return {"ready": True}, 200


SHOP_LANGUAGES = ("en", "de")  # the demo shop's, as the shipped flow's


@bp.get("/")
def index() -> Response:
    """Show the demo shop, carrying the widget as any site would: one script tag.

    In English or German (`?lang=de`, else the browser's preference): the page's `lang` is what
    the widget, and so the bot, speak.
    """
    lang = request.args.get("lang")
    if lang not in SHOP_LANGUAGES:
        lang = request.accept_languages.best_match(SHOP_LANGUAGES, default="en")
    page = make_response(render_template("index.html", lang=lang))
    page.vary.add("Accept-Language")
    return headers.secure(page)  # the console's strict policy: the widget needs no more


# The demo shop's order API, which the shipped flow's `call` example queries. Any well-formed order
# id exists except those ending in 0, so every branch of a flow can be tried by hand:
# a final 8 was delivered, another even last digit has shipped, an odd one is still processing,
# and a final 0 is "no such order".
ORDER_ID = re.compile(r"[A-Z]{2}[0-9]{6}")  # [0-9], not \d, which also matches non-ASCII digits
CARRIERS = ("UPS", "DPD", "DHL")
FIRST_ETA = date(2026, 11, 22)


@bp.get("/demo/api/orders/<order_id>")
def demo_order(order_id: str) -> tuple[dict, int]:
    """Return a made-up, deterministic order of the demo shop, or 404 if there is no such order."""
    if not ORDER_ID.fullmatch(order_id) or order_id.endswith("0"):
        return {"error": "no such order"}, 404
    last, tens = int(order_id[-1]), int(order_id[-2])
    shipped = last % 2 == 0
    return {
        "order_id": order_id,
        "status": "delivered" if last == 8 else "shipped" if shipped else "processing",
        "carrier": CARRIERS[tens % len(CARRIERS)] if shipped else None,
        "eta": (FIRST_ETA + timedelta(days=last)).isoformat(),
    }, 200
