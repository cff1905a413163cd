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
from typing import Any

from flask import Flask, Response, current_app, request
from flask.sessions import SecureCookieSessionInterface
from flask_limiter import Limiter
from flask_login import LoginManager, UserMixin, current_user
from flask_login.config import COOKIE_NAME
from flask_wtf.csrf import CSRFProtect
from limits.storage import RedisStorage, Storage

from routing.agents import SESSION_MAX_S, Accounts, Agent
from runtime import redis_clients
from runtime import wiring as live

log = logging.getLogger(__name__)

ACCOUNTS = "concierge.accounts"
# app.extensions: callables hook(agent_id, session_id), run on logout
LOGOUT_HOOKS = "concierge.logout_hooks"
LIMITER_KEYS = "{prefix}limiter"  # Flask-Limiter's keys: {prefix}limiter:LIMITER/<key>/<endpoint>/…
LIMITER_POOL_SIZE = 8  # the login limits' connections in a worker (to each node of a cluster)
LIMITER_SCHEME = "concierge+redis"  # `limits`' storage on the factory's client (_Storage)
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


@limiter.request_filter
def _not_limited() -> bool:
    """Only POST /login is limited: any other request skips the limiter's bookkeeping (on a
    socket's upgrade it was ~5 % of the CPU to open it; docs/operating.md, "Capacity")."""
    return request.method != "POST"


class _SessionInterface(SecureCookieSessionInterface):
    """Flask's signed-cookie sessions, with the signing serializer made once per key, not on
    every request (every socket's upgrade opens the session: ~2 % of the CPU to open one)."""

    def __init__(self) -> None:
        self._made: tuple[tuple[Any, ...], Any] | None = None

    def get_signing_serializer(self, app: Flask) -> Any:
        keys = (app.secret_key, *(app.config.get("SECRET_KEY_FALLBACKS") or ()))
        if self._made is None or self._made[0] != keys:
            self._made = (keys, super().get_signing_serializer(app))
        return self._made[1]


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
    app.session_interface = _SessionInterface()
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
    """Return where the login limits are counted: in REDIS_URL's Redis, through _Storage.

    Not `limits`' own storage for the URL: it would make its own client, and for a cluster
    (`limits` reads `redis+cluster://` as we do) one that dials as the app is made, so the
    app would not build with the cluster away. _Storage is `limits`' storage (its scripts and
    counters) on a client of runtime/redis_clients.py, one Redis or a cluster.
    """
    if not redis_url:
        return "memory://"  # no Redis (a `flask` command): nothing is served to limit
    return f"{LIMITER_SCHEME}://"


def _limiter_options(config: dict) -> dict[str, object]:
    if not config.get("REDIS_URL"):
        return {}
    # The same keys whatever the URL: Flask-Limiter merges each app's options into the last's.
    return {"redis_url": config["REDIS_URL"],
            "key_prefix": LIMITER_KEYS.format(prefix=config["REDIS_PREFIX"]),
            "wrap_exceptions": True}  # Redis away: limits.errors.StorageError, a 503 page


class _Storage(RedisStorage):
    """`limits`' Redis storage on a client of the factory: the worker's timeouts, a blocking
    pool (per node of a cluster), dialled on first use. Each counter is one key, so one slot."""

    STORAGE_SCHEME = [LIMITER_SCHEME]

    def __init__(self, uri: str, redis_url: str = "", key_prefix: str = RedisStorage.PREFIX,
                 wrap_exceptions: bool = False, **_options: object) -> None:
        # What RedisStorage.__init__ sets, with the factory's client for the one it would make
        Storage.__init__(self, uri, wrap_exceptions)
        self.key_prefix = key_prefix
        self.target_server = "redis"
        self.dependency = self.dependencies["redis"].module
        self.storage = redis_clients.connect(redis_url, LIMITER_POOL_SIZE)
        self.initialize_storage(uri)


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
