"""The console's pages: log in, log out, and the console (a placeholder until it is built)."""

from __future__ import annotations

import logging
import math
import time
from urllib.parse import urlsplit

import redis as redis_lib
from flask import (
    Blueprint,
    Response,
    current_app,
    jsonify,
    redirect,
    render_template,
    request,
    session,
    url_for,
)
from flask_limiter import RateLimitExceeded
from flask_login import current_user, login_required, login_user, logout_user
from flask_wtf.csrf import CSRFError
from limits.errors import StorageError

from runtime import flows

from . import auth, canned, headers
from .auth import ConsoleUser, limiter

log = logging.getLogger(__name__)

bp = Blueprint("console", __name__, template_folder="templates")
bp.after_request(headers.secure)

WRONG = "wrong agent id or password"  # never which of the two: that would confirm an id
UNAVAILABLE_RETRY_S = 30  # Retry-After of the 503 page while Redis does not answer
MINUTE_S = 60
HOUR_S = 3600


def login_rate() -> str:
    return current_app.config["LOGIN_RATE"]


def _accounts() -> auth.Accounts:
    accounts = auth.current_accounts()
    if accounts is None:  # no REDIS_URL: nowhere to keep accounts (the same page as Redis away)
        raise redis_lib.ConnectionError("no Redis configured")
    return accounts


def safe_next(target: str | None) -> str:
    """Return `target` if it is a path on this site, else the console: never another site."""
    home = url_for(".console")
    # "//host" and "/\\host" are other sites to a browser; a control character can hide either
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target \
            or any(ord(char) < 0x20 or ord(char) == 0x7F for char in target):
        return home
    parts = urlsplit(target)
    return home if parts.scheme or parts.netloc else target


def _login_page(status: int = 200, error: str | None = None) -> Response:
    page = render_template("login.html", error=error,
                           agent_id=auth.submitted_agent_id() if request.form else "",
                           next=request.values.get("next", ""))
    return Response(page, status)


@bp.get("/login")
def login_form() -> Response:
    """Show the login form (an agent already logged in goes on to the console)."""
    if current_user.is_authenticated:
        return redirect(safe_next(request.args.get("next")))
    return _login_page()


@bp.post("/login")
@limiter.limit(login_rate, key_func=auth.by_account)  # per account, whoever tries it
@limiter.limit(login_rate)  # per address (the limiter's key), whichever accounts it tries
def login() -> Response:
    """Check the agent id and password; open a session and go on, or say 401 and why."""
    accounts = _accounts()
    agent_id = auth.submitted_agent_id()
    agent = accounts.check_password(agent_id, request.form.get("password", ""))
    if agent is None:
        log.info("console login refused for %r from %s", agent_id[:64], request.remote_addr)
        return _login_page(401, WRONG)
    _end_current_session(accounts)  # a browser logged in as someone else logs that one out
    session.pop("csrf_token", None)  # a fresh CSRF token for the logged-in session
    login_user(ConsoleUser(agent, accounts.new_session(agent.id)))
    session.permanent = True  # the cookie lasts as long as the session may (SESSION_MAX_S)
    log.info("agent %s logged in to the console from %s", agent.id, request.remote_addr)
    return redirect(safe_next(request.form.get("next")))


@bp.get("/logout")
def logout_page() -> Response:
    """A typed /logout: logging out takes the console's button (a form post, CSRF-checked)."""
    return redirect(url_for(".console"))


@bp.post("/logout")
def logout() -> Response:
    """End the session in Redis and in the browser, tell the logout hooks, go to the login."""
    agent_id = current_user.id if current_user.is_authenticated else None
    session_id = session.get("_user_id", "")  # Flask-Login's key: our session id
    _end_current_session(_accounts())
    logout_user()
    session.clear()
    if agent_id is not None:
        log.info("agent %s logged out of the console", agent_id)
        auth.run_logout_hooks(agent_id, session_id)
    return redirect(url_for(".login_form"))


def _end_current_session(accounts: auth.Accounts) -> None:
    session_id = session.get("_user_id")  # Flask-Login's key: our session id
    if session_id:
        accounts.end_session(session_id)


@bp.get("/console")
@login_required
def console() -> str:
    """Show the console to a logged-in agent (a placeholder until the console is built)."""
    return render_template("console.html", agent=current_user.agent)


@bp.get("/console/canned")
@login_required
def canned_replies() -> Response:
    """Serve CANNED_FILE's replies as JSON; a broken file gives none and says why (never a 500)."""
    replies, error = canned.current().replies()
    return jsonify(replies=[reply.as_dict() for reply in replies], error=error)


@bp.get("/console/flows/<flow_id>/states")
@login_required
def flow_states(flow_id: str) -> tuple[Response, int]:
    """List a flow's states, for the console's "back to the bot at a state" (404 if unknown)."""
    catalog = flows.current_catalog()
    flow = catalog.get(flow_id) if catalog is not None else None
    if flow is None:
        return jsonify(states=[], error=f"no flow {flow_id[:100]!r}"), 404
    return jsonify(states=list(flow.states), start=flow.start, error=None), 200


@bp.errorhandler(CSRFError)
def form_expired(_error: CSRFError) -> tuple[str, int]:
    """Refuse a post without its form's token: 400, and how to go on (Flask-WTF logs why)."""
    back = url_for(".console") if request.endpoint == "console.logout" else \
        url_for(".login_form")
    return render_template("notice.html", title="This form has expired",
                           message="Reload the page and try again.", back=back), 400


@bp.errorhandler(RateLimitExceeded)
def too_many_attempts(error: RateLimitExceeded) -> Response:
    """Refuse a login past LOGIN_RATE: 429, with the form and how long to wait."""
    wait_s = _wait_s(error)
    page = _login_page(429, f"Too many login attempts. Wait {_duration(wait_s)} and try again.")
    page.headers["Retry-After"] = str(wait_s)
    return page


def _wait_s(error: RateLimitExceeded) -> int:
    window_s = error.limit.limit.get_expiry()
    breached = limiter.current_limit
    if breached is None:
        return window_s
    try:
        return max(1, breached.reset_at - int(time.time()))
    except (redis_lib.RedisError, StorageError):  # Redis went away since the check
        return window_s


def _duration(seconds: int) -> str:
    if seconds < MINUTE_S:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    if seconds < 2 * HOUR_S:
        minutes = math.ceil(seconds / MINUTE_S)
        return f"about {minutes} minute{'s' if minutes != 1 else ''}"
    return f"about {math.ceil(seconds / HOUR_S)} hours"


@bp.errorhandler(redis_lib.RedisError)
@bp.errorhandler(StorageError)
def unavailable(error: Exception) -> tuple[str, int, dict[str, str]]:
    """Answer 503 with a page, not a traceback, while Redis (accounts, sessions) is away."""
    log.warning("console page %s unavailable: Redis does not answer (%s)", request.path, error)
    return render_template(
        "notice.html", title="The console is unavailable",
        message="It cannot reach Redis, where accounts and sessions are kept. Try again in a "
                "minute.", back=url_for(".login_form"),
    ), 503, {"Retry-After": str(UNAVAILABLE_RETRY_S)}
