"""Who is asking: console logins (Flask-Login), CSRF (Flask-WTF) and login limits (Flask-Limiter).

The extensions are made here without an app and bound in `init_app`. The Flask-Login user is the
agent; the session cookie holds no agent id alone but a session id (`agent:nonce`) that
routing/agents.py keeps in Redis, so a logout, `flask agents passwd` or `remove` ends the
session everywhere, not only in the browser that held the cookie (Flask-Login's alternative
ids). Remember-me cookies are never issued: a session lasts a shift already, and a second,
year-long credential would only be one more thing to revoke.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import timedelta

from flask import Flask, Response, current_app, request
from flask_limiter import Limiter
from flask_login import LoginManager, UserMixin, current_user
from flask_login.config import COOKIE_NAME
from flask_wtf.csrf import CSRFProtect

from routing.agents import SESSION_MAX_S, Accounts, Agent
from runtime import wiring as live

log = logging.getLogger(__name__)

ACCOUNTS = "concierge.accounts"
# app.extensions: callables hook(agent_id, session_id), run on logout
LOGOUT_HOOKS = "concierge.logout_hooks"
LIMITER_KEYS = "{prefix}limiter"  # Flask-Limiter's keys: {prefix}limiter:LIMITER/<key>/<endpoint>/…
LIMITER_TIMEOUT_S = 5.0  # as the worker's own Redis pool (runtime/wiring.py)
MAX_ACCOUNT_KEY_CHARS = 100  # a submitted id longer than any real one still counts, cut short
BEARER = "bearer "

class _LoginManager(LoginManager):
    """Flask-Login, minus its look at the session on every response."""

    def _update_remember_cookie(self, response: Response) -> Response:
        # Flask-Login reads the session after every request to manage remember-me cookies,
        # which we never issue; any read marks the response `Vary: Cookie`, and then no shared
        # cache could serve /widget.js or the static files as the one public file they are.
        # A remember cookie a browser still sends (none is ever set) is left to Flask-Login.
        if current_app.config.get("REMEMBER_COOKIE_NAME", COOKIE_NAME) not in request.cookies:
            return response
        return super()._update_remember_cookie(response)


login_manager = _LoginManager()
csrf = CSRFProtect()
# Flask-Limiter keeps its storage on the extension object, so with several apps in one process
# (tests) the last app bound wins; a server builds one app a process.
limiter = Limiter(key_func=lambda: f"address:{request.remote_addr or 'unknown'}")


class ConsoleUser(UserMixin):
    """An agent logged in to the console, through one session."""

    def __init__(self, agent: Agent, session_id: str) -> None:
        self.agent = agent
        self.session_id = session_id

    @property
    def id(self) -> str:
        return self.agent.id

    def get_id(self) -> str:
        """Return what the cookie keeps: the session id, never the bare agent id."""
        return self.session_id


def init_app(app: Flask) -> None:
    """Bind logins, CSRF and the login limits to `app`; set its cookies' attributes."""
    production = app.config["CONCIERGE_ENV"] == "production"
    app.config.update(
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Lax",  # sent on top-level navigation, not on cross-site posts
        SESSION_COOKIE_SECURE=production,  # development serves plain http on loopback
        PERMANENT_SESSION_LIFETIME=timedelta(seconds=SESSION_MAX_S),  # as Redis's session
        REMEMBER_COOKIE_HTTPONLY=True,  # never set (login_user(remember=False)); hardened anyway
        REMEMBER_COOKIE_SAMESITE="Lax",
        REMEMBER_COOKIE_SECURE=production,
        # A token lives as long as its session: a console open all shift can still log out.
        WTF_CSRF_TIME_LIMIT=SESSION_MAX_S,
        RATELIMIT_STORAGE_URI=limiter_storage_uri(app.config.get("REDIS_URL")),
        RATELIMIT_STORAGE_OPTIONS=_limiter_options(app.config),
        RATELIMIT_DEFAULT=None,  # only POST /login is limited (web/console.py)
        RATELIMIT_HEADERS_ENABLED=False,  # the 429 page says how long to wait, and Retry-After
    )
    parts = app.extensions.get(live.EXTENSION)
    app.extensions[ACCOUNTS] = None if parts is None else Accounts(parts.redis,
                                                                   app.config["REDIS_PREFIX"])
    app.extensions.setdefault(LOGOUT_HOOKS, [])
    login_manager.init_app(app, add_context_processor=False)  # pages load the user, not renders
    login_manager.login_view = "console.login_form"
    login_manager.login_message = None  # the login page says what it needs; no flashed text
    csrf.init_app(app)  # before the limiter: a post without a valid token costs no attempt
    limiter.init_app(app)


def limiter_storage_uri(redis_url: str | None) -> str:
    """Return REDIS_URL as the `limits` library spells it (`unix://` is `redis+unix://` there)."""
    if not redis_url:
        return "memory://"  # no Redis (a `flask` command): nothing is served to limit
    if redis_url.startswith("unix://"):
        return "redis+unix://" + redis_url.removeprefix("unix://")
    return redis_url


def _limiter_options(config: dict) -> dict[str, object]:
    if not config.get("REDIS_URL"):
        return {}
    return {"key_prefix": LIMITER_KEYS.format(prefix=config["REDIS_PREFIX"]),
            "wrap_exceptions": True,  # Redis away: limits.errors.StorageError, a 503 page
            "socket_timeout": LIMITER_TIMEOUT_S, "socket_connect_timeout": LIMITER_TIMEOUT_S}


def current_accounts() -> Accounts | None:
    """Return the app's accounts; None when it has no Redis."""
    return current_app.extensions.get(ACCOUNTS)


@login_manager.user_loader
def _load_user(session_id: str) -> ConsoleUser | None:
    accounts = current_accounts()
    if accounts is None:
        return None
    agent_id = accounts.session_agent(session_id)  # renews the session's idle time
    agent = accounts.get(agent_id) if agent_id else None
    return ConsoleUser(agent, session_id) if agent else None


def agent_of_request() -> str | None:
    """Return the agent id of the current request: its console session, else its API token.

    The token comes from `Authorization: Bearer <token>` or `?token=<token>`. Raises
    redis.RedisError when Redis does not answer.
    """
    if current_user.is_authenticated:
        return current_user.id
    token = request_token()
    accounts = current_accounts()
    if not token or accounts is None:
        return None
    agent = accounts.token_agent(token)
    return agent.id if agent else None


def request_token() -> str:
    """Return the API token the request carries (Bearer header, else `?token=`), or ""."""
    header = request.headers.get("Authorization", "")
    token = header[len(BEARER):].strip() if header.lower().startswith(BEARER) else ""
    return token or request.args.get("token", "")


def submitted_agent_id() -> str:
    """Return the agent id of a login form as accounts spell it: stripped, lower-case."""
    return request.form.get("agent_id", "").strip().lower()


def by_account() -> str:
    """Key the login limit per account: the submitted id, however it was typed."""
    return f"account:{submitted_agent_id()[:MAX_ACCOUNT_KEY_CHARS]}"


def on_logout(app: Flask, hook: Callable[[str, str], object]) -> None:
    """Call `hook(agent_id, session_id)` after every logout (after the session has ended)."""
    app.extensions.setdefault(LOGOUT_HOOKS, []).append(hook)


def run_logout_hooks(agent_id: str, session_id: str) -> None:
    """Call every logout hook; one that fails is logged and the others still run."""
    for hook in current_app.extensions.get(LOGOUT_HOOKS, []):
        try:
            hook(agent_id, session_id)
        except Exception:  # a hook's failure must not undo the logout, nor stop the others
            log.exception("logout hook %r failed for agent %s", hook, agent_id)
