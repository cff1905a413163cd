"""Read Concierge's configuration from the environment: the one module that looks at os.environ.

Over ~300 lines because every setting is read, validated and documented in one place (the
README's configuration table lists them); the reader of typed values is its one helper.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
import secrets
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from urllib.parse import unquote, urlsplit

log = logging.getLogger(__name__)

VAR_DIR = Path(__file__).resolve().parent.parent / "var"  # a checkout's runtime files; not in git
SECRET_KEY_FILE = "secret_key"
SECRET_KEY_BYTES = 32  # 256 bits: as strong as the HMAC-SHA256 signatures it keys

ENVIRONMENTS = ("development", "production")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
REDIS_SCHEMES = ("redis", "rediss", "unix", "redis+cluster", "rediss+cluster")
CLUSTER_SCHEMES = {"redis+cluster": False, "rediss+cluster": True}  # scheme -> TLS
CLUSTER_FORM = "redis+cluster://[[user]:password@]host:port[,host:port…]"
FLOW_SECRET_PREFIX = "FLOW_SECRET_"
REQUIRED_IN_PRODUCTION = ("SECRET_KEY", "REDIS_URL", "ALLOWED_ORIGINS")
MAX_PORT = 65535
DEV_HOST = "127.0.0.1"  # development: reachable from this machine only
PRODUCTION_HOST = "0.0.0.0"  # a PaaS routes to the instance from outside: every interface
ANY_ADDRESS = {"0.0.0.0": "127.0.0.1", "::": "::1"}  # listening on all: reach it on loopback
HOST_LABEL = re.compile(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", re.IGNORECASE)  # RFC 1123
MAX_HOST_NAME = 253  # characters in a DNS name
RATE = re.compile(r"\s*[1-9][0-9]*\s*(/|per)\s*(second|minute|hour|day)s?\s*", re.IGNORECASE)


class ConfigError(Exception):
    """The environment holds values Concierge cannot run with; lists every one of them."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {problem}" for problem in problems)
        super().__init__(f"invalid configuration ({len(problems)} problem(s)):\n{lines}")


@dataclass(frozen=True)
class Config:
    """Every setting of the service, validated (the README's configuration table lists them)."""

    env: str = "development"
    port: int = 5000
    host: str = DEV_HOST  # the address to listen on; production's default is PRODUCTION_HOST
    redis_url: str | None = None
    secret_key: str | None = None
    allowed_origins: tuple[str, ...] = ()  # empty: only the server's own origin
    flows_dir: Path = Path("flows")
    default_flow: str = "default"
    queues_file: Path = Path("queues.yaml")
    identity_secret: str | None = None
    web_concurrency: int = 1
    redis_prefix: str = "concierge:"
    log_level: str = "INFO"
    self_url: str = "http://127.0.0.1:5000"
    flow_secrets: dict[str, str] = field(default_factory=dict)
    retention_days: int = 30
    max_frame_bytes: int = 16 * 1024  # a frame, at most; past it: close 1009 (docs/protocol.md)
    max_text_chars: int = 4_000
    max_conversation_messages: int = 1_000  # a resume replays the log: this bounds one hello's cost
    frame_rate: int = 20  # frames a second, sustained, per connection
    ping_interval_s: int = 25  # inside the ~55 s after which PaaS routers cut idle sockets
    max_sockets_per_address: int = 100  # in each worker: no one address fills a worker
    new_conversations_per_address: int = 60  # in 10 minutes, counted in Redis (web/limits.py)
    trusted_proxy_hops: int = 0  # proxies in front that append to X-Forwarded-For (a PaaS: 1)
    agent_grace_s: int = 60  # an agent whose last socket dropped keeps its conversations this long
    agent_ping_s: int = 10  # the server pings agent sockets this often; presence lasts 3 of them
    canned_file: Path = Path("canned.yaml")
    login_rate: str = "5/minute"  # console login attempts per account and per address
    # Replicas a stored message must reach before it is acked, and how long to wait for them
    # (Redis's WAIT; docs/operating.md, "Failover and what an ack means"). 0: the master's word.
    redis_wait_replicas: int = 0
    redis_wait_ms: int = 100
    problems: tuple[str, ...] = ()  # what was wrong in the environment (only when not strict)

    @property
    def production(self) -> bool:
        """Tell whether this is a production deployment."""
        return self.env == "production"

    @property
    def bind(self) -> str:
        """Return where the server listens, as gunicorn's `bind` (host:port)."""
        return f"{_url_host(self.host)}:{self.port}"

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, *, strict: bool = True) -> Config:
        """Build the config from `environ` (default: os.environ).

        Strict (the server, before it starts): raise ConfigError listing every bad value.
        Not strict (the app factory, so that the `flask` commands always run): put the
        default in place of each bad value and list the problems in `problems`.
        """
        read = _Reader(os.environ if environ is None else environ)
        env = read.choice("CONCIERGE_ENV", "development", ENVIRONMENTS, str.lower)
        port = read.integer("PORT", 5000, maximum=MAX_PORT)
        host = read.host("HOST", PRODUCTION_HOST if env == "production" else DEV_HOST)
        reach = ANY_ADDRESS.get(host, host)  # where this machine reaches the server
        config = cls(
            env=env,
            port=port,
            host=host,
            redis_url=read.redis_url("REDIS_URL"),
            secret_key=read.text("SECRET_KEY"),
            allowed_origins=read.origins("ALLOWED_ORIGINS"),
            flows_dir=Path(read.text("FLOWS_DIR", "flows")),
            default_flow=read.text("DEFAULT_FLOW", "default"),
            queues_file=Path(read.text("QUEUES_FILE", "queues.yaml")),
            identity_secret=read.text("IDENTITY_SECRET"),
            web_concurrency=read.integer("WEB_CONCURRENCY", os.cpu_count() or 1),
            redis_prefix=read.prefix("REDIS_PREFIX", "concierge:"),
            log_level=read.choice("LOG_LEVEL", "INFO", LOG_LEVELS, str.upper),
            self_url=read.http_url("SELF_URL", f"http://{_url_host(reach)}:{port}"),
            flow_secrets=read.flow_secrets(),
            retention_days=read.integer("RETENTION_DAYS", 30),
            max_frame_bytes=read.integer("MAX_FRAME_BYTES", 16 * 1024),
            max_text_chars=read.integer("MAX_TEXT_CHARS", 4_000),
            max_conversation_messages=read.integer("MAX_CONVERSATION_MESSAGES", 1_000),
            frame_rate=read.integer("FRAME_RATE", 20),
            ping_interval_s=read.integer("PING_INTERVAL_S", 25),
            max_sockets_per_address=read.integer("MAX_SOCKETS_PER_ADDRESS", 100),
            new_conversations_per_address=read.integer("NEW_CONVERSATIONS_PER_ADDRESS", 60),
            trusted_proxy_hops=read.integer("TRUSTED_PROXY_HOPS", 0, minimum=0),
            agent_grace_s=read.integer("AGENT_GRACE_S", 60, minimum=0),
            agent_ping_s=read.integer("AGENT_PING_S", 10),
            canned_file=Path(read.text("CANNED_FILE", "canned.yaml")),
            login_rate=read.rate("LOGIN_RATE", "5/minute"),
            redis_wait_replicas=read.integer("REDIS_WAIT_REPLICAS", 0, minimum=0, maximum=16),
            redis_wait_ms=read.integer("REDIS_WAIT_MS", 100, maximum=10_000),
        )
        if config.production:
            for name in REQUIRED_IN_PRODUCTION:
                if read.text(name) is None:
                    read.problem(f"{name} is required when CONCIERGE_ENV=production")
        if read.problems and strict:
            raise ConfigError(read.problems)
        return replace(config, problems=tuple(read.problems)) if read.problems else config

    def as_flask(self) -> dict[str, object]:
        """Return the settings as Flask config keys."""
        return {
            "CONCIERGE_ENV": self.env,
            "SECRET_KEY": self.secret_key or dev_secret(),
            "PORT": self.port,
            "HOST": self.host,
            "REDIS_URL": self.redis_url,
            "ALLOWED_ORIGINS": self.allowed_origins,
            "FLOWS_DIR": self.flows_dir,
            "DEFAULT_FLOW": self.default_flow,
            "QUEUES_FILE": self.queues_file,
            "IDENTITY_SECRET": self.identity_secret,
            "WEB_CONCURRENCY": self.web_concurrency,
            "REDIS_PREFIX": self.redis_prefix,
            "LOG_LEVEL": self.log_level,
            "SELF_URL": self.self_url,
            "FLOW_SECRETS": dict(self.flow_secrets),
            "RETENTION_DAYS": self.retention_days,
            "MAX_FRAME_BYTES": self.max_frame_bytes,
            "MAX_TEXT_CHARS": self.max_text_chars,
            "MAX_CONVERSATION_MESSAGES": self.max_conversation_messages,
            "FRAME_RATE": self.frame_rate,
            "PING_INTERVAL_S": self.ping_interval_s,
            "MAX_SOCKETS_PER_ADDRESS": self.max_sockets_per_address,
            "NEW_CONVERSATIONS_PER_ADDRESS": self.new_conversations_per_address,
            "TRUSTED_PROXY_HOPS": self.trusted_proxy_hops,
            "AGENT_GRACE_S": self.agent_grace_s,
            "AGENT_PING_S": self.agent_ping_s,
            "CANNED_FILE": self.canned_file,
            "LOGIN_RATE": self.login_rate,
            "REDIS_WAIT_REPLICAS": self.redis_wait_replicas,
            "REDIS_WAIT_MS": self.redis_wait_ms,
            "CONFIG_PROBLEMS": list(self.problems),
        }


@dataclass(frozen=True)
class ClusterURL:
    """A REDIS_URL that names a Redis Cluster: the nodes to ask for the rest, and how to log in."""

    nodes: tuple[tuple[str, int], ...]  # (host, port) of each node named; any one will do
    tls: bool = False  # rediss+cluster://
    username: str | None = None
    password: str | None = None


def is_cluster_url(url: str | None) -> bool:
    """Tell whether a Redis URL names a Redis Cluster (`redis+cluster://`, `rediss+cluster://`)."""
    return bool(url) and urlsplit(url).scheme in CLUSTER_SCHEMES


def parse_cluster_url(url: str) -> ClusterURL:
    """Read `redis+cluster://[[user]:password@]host:port[,host:port…][/]`, the form of the
    `limits` library (Flask-Limiter's storage), so that one REDIS_URL serves both.

    Raises ValueError saying what to fix; the message never holds the password.
    """
    parts = urlsplit(url)
    if parts.scheme not in CLUSTER_SCHEMES:
        raise ValueError(f"a cluster URL starts with redis+cluster:// or rediss+cluster:// "
                         f"(got scheme {parts.scheme!r})")
    if parts.query or parts.fragment:
        raise ValueError(f"a cluster URL takes no ?options or #fragment: {CLUSTER_FORM}")
    if parts.path not in ("", "/", "/0"):
        if parts.path.strip("/").isdigit():
            raise ValueError("a Redis Cluster has only database 0: drop the "
                             f"/{parts.path.strip('/')} at the end of the URL")
        raise ValueError(f"a cluster URL has no path (only an optional /0): {CLUSTER_FORM}")
    credentials, at, locations = parts.netloc.rpartition("@")
    if "@" in credentials:
        raise ValueError("a cluster URL's password may not hold a bare @: write it as %40")
    username = password = None
    if at:
        user, colon, secret = credentials.partition(":")
        username = unquote(user) or None
        password = unquote(secret) if colon and secret else None
    nodes = []
    for location in locations.split(","):
        node = location
        if not node.strip():
            raise ValueError(f"a cluster URL names at least one node, as host:port, and no "
                             f"empty one between commas: {CLUSTER_FORM}")
        try:
            address = urlsplit(f"//{node}")
            host, port = address.hostname, address.port
        except ValueError:  # a port that is not a number, or past 65535
            host = port = None
        # every character of a node is its host or port: no spaces, nothing after the port
        well_formed = host is not None and port is not None and \
            node.rpartition(":")[2] == str(port) and " " not in node and \
            node.rpartition(":")[0].lower() in (host, f"[{host}]")
        if not well_formed or address.username is not None:
            raise ValueError(f"a cluster node is host:port, with a port from 1 to {MAX_PORT} "
                             f"(got {node!r}): {CLUSTER_FORM}")
        nodes.append((host, port))
    return ClusterURL(nodes=tuple(nodes), tls=CLUSTER_SCHEMES[parts.scheme],
                      username=username, password=password)


def export_redis_url(url: str) -> None:
    """Hand the embedded Redis's URL to the workers, which read the environment they inherit."""
    os.environ["REDIS_URL"] = url


def ensure_dev_secret(var_dir: Path | None = None) -> str:
    """Return the development secret key, creating `var_dir`/secret_key on first use."""
    existing = read_dev_secret(var_dir)
    if existing:
        return existing
    path = (var_dir or VAR_DIR) / SECRET_KEY_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_hex(SECRET_KEY_BYTES)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(secret + "\n")
    log.info("created development secret key in %s", path)
    return secret


def read_dev_secret(var_dir: Path | None = None) -> str | None:
    """Return the development secret key kept in `var_dir`, or None if there is none yet."""
    try:
        return (var_dir or VAR_DIR).joinpath(SECRET_KEY_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def dev_secret(var_dir: Path | None = None) -> str:
    """Return the kept development secret, or a random one good for this process only."""
    kept = read_dev_secret(var_dir)
    if kept:
        return kept
    # gunicorn's on_starting makes the file, so only `flask` commands and tests get here; for them a
    # key that does not survive a restart or cross workers does no harm.
    log.debug("no SECRET_KEY and no development secret file: using a per-process random key")
    return secrets.token_hex(SECRET_KEY_BYTES)


class _Reader:
    """Read typed values from an environment, collecting a message for each bad one."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self.environ = environ
        self.problems: list[str] = []

    def problem(self, message: str) -> None:
        self.problems.append(message)

    def text(self, name: str, default: str | None = None) -> str | None:
        """Return the variable, stripped; unset or empty gives `default`."""
        value = self.environ.get(name, "").strip()
        return value or default

    def integer(self, name: str, default: int, maximum: int | None = None,
                minimum: int = 1) -> int:
        raw = self.text(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            self.problem(f"{name}={raw!r} is not a whole number")
            return default
        if value < minimum or (maximum is not None and value > maximum):
            bounds = f"between {minimum} and {maximum}" if maximum is not None else \
                f"at least {minimum}"
            self.problem(f"{name}={raw!r} must be {bounds}")
            return default
        return value

    def prefix(self, name: str, default: str) -> str:
        """A key prefix: no braces, which would change the hash tags the keys rely on."""
        raw = self.text(name, default) or default
        if "{" in raw or "}" in raw:
            self.problem(f"{name}={raw!r} may not hold {{ or }}: they would make the prefix a "
                         "hash tag, and put every conversation in one Redis Cluster slot")
            return default
        return raw

    def choice(
        self, name: str, default: str, choices: tuple[str, ...], normalize: Callable[[str], str]
    ) -> str:
        raw = self.text(name)
        if raw is None:
            return default
        value = normalize(raw)
        if value not in choices:
            self.problem(f"{name}={raw!r} must be one of: {', '.join(choices)}")
            return default
        return value

    def host(self, name: str, default: str) -> str:
        raw = self.text(name)
        if raw is None:
            return default
        bare = raw[1:-1] if raw.startswith("[") and raw.endswith("]") else raw
        try:
            return str(ipaddress.ip_address(bare))
        except ValueError:
            pass
        labels = raw.split(".")
        # A last label of digits only is a mistyped address (10.0.0), not a name.
        if len(raw) <= MAX_HOST_NAME and all(HOST_LABEL.fullmatch(label) for label in labels) \
                and not labels[-1].isdigit():
            return raw.lower()
        self.problem(f"{name}={raw!r} must be an IP address (such as 127.0.0.1 or 0.0.0.0) or a "
                     "host name, without a port (PORT sets the port)")
        return default

    def rate(self, name: str, default: str) -> str:
        """Read a rate such as `5/minute` or `20 per hour` (Flask-Limiter's notation)."""
        raw = self.text(name)
        if raw is None:
            return default
        if not RATE.fullmatch(raw):
            self.problem(f"{name}={raw!r} must be a count per unit of time, such as 5/minute or "
                         "20/hour (units: second, minute, hour, day)")
            return default
        return raw

    def redis_url(self, name: str) -> str | None:
        raw = self.text(name)
        if raw is None:
            return None
        # The value is never echoed: a Redis URL may carry a password.
        try:
            parts = urlsplit(raw)
            scheme = parts.scheme
            if scheme in ("redis", "rediss"):
                parts.port  # noqa: B018 - raises ValueError for a port that is no number
        except ValueError as exc:
            form = CLUSTER_FORM if raw.startswith(("redis+cluster:", "rediss+cluster:")) else \
                "redis://[[user]:password@]host[:port][/db]"
            self.problem(f"{name}: not a valid URL ({exc}): write {form}, an IPv6 host in "
                         "brackets ([::1])")
            return None
        if scheme not in REDIS_SCHEMES:
            schemes = ", ".join(f"{s}://" for s in REDIS_SCHEMES)
            self.problem(f"{name} must start with one of {schemes} (got scheme {scheme!r})")
            return None
        if scheme in CLUSTER_SCHEMES:
            try:
                parse_cluster_url(raw)
            except ValueError as exc:
                self.problem(f"{name}: {exc}")
                return None
        return raw

    def http_url(self, name: str, default: str) -> str:
        raw = self.text(name)
        if raw is None:
            return default
        parts = urlsplit(raw)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            self.problem(f"{name}={raw!r} must be an http:// or https:// URL with a host")
            return default
        return raw.rstrip("/")

    def origins(self, name: str) -> tuple[str, ...]:
        raw = self.text(name)
        if raw is None:
            return ()
        origins = []
        for item in filter(None, (part.strip() for part in raw.split(","))):
            origin = _origin(item)
            if origin is None:
                self.problem(
                    f"{name}: {item!r} is not an origin like https://shop.example.com "
                    "(scheme, host and optional port; no path)"
                )
            else:
                origins.append(origin)
        return tuple(origins)

    def flow_secrets(self) -> dict[str, str]:
        found = {}
        for key, value in self.environ.items():
            if not key.startswith(FLOW_SECRET_PREFIX):
                continue
            name = key[len(FLOW_SECRET_PREFIX) :]
            if not name.isidentifier():
                self.problem(
                    f"{key}: a flow secret's name (after {FLOW_SECRET_PREFIX}) must be letters, "
                    "digits and underscores, not starting with a digit"
                )
                continue
            found[name] = value
        return found


def _url_host(host: str) -> str:
    """Write `host` as it goes before a port: an IPv6 address in brackets."""
    return f"[{host}]" if ":" in host else host


def _origin(text: str) -> str | None:
    """Return `text` as a normalised origin (scheme://host[:port]), or None if it is not one."""
    parts = urlsplit(text)
    try:
        port_ok = parts.port != 0  # urlsplit raises ValueError on a non-numeric or too large port
    except ValueError:
        return None
    if not port_ok or parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()
