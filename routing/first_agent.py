"""The first agent account of `make run`, so that a first look can log in to the console.

Development only, on the embedded Redis (gunicorn.conf.py calls it; never with REDIS_URL set):
when Redis holds no account yet, make `ada` with a random password and keep both in
var/first-agent (readable by its owner only, like var/secret_key), so that every start can say
again how to log in, or that the password was changed since.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

import redis as redis_lib

from runtime import redis_clients
from runtime.config import VAR_DIR

from .agents import AccountError, Accounts, Agent

FIRST_AGENT_FILE = "first-agent"  # in var/: the agent id and its password, one a line
FIRST_AGENT = Agent(id="ada", name="Ada Lovelace", queues=["support"], max_chats=3, role="lead")
PASSWORD_BYTES = 12  # secrets.token_urlsafe: 16 url-safe characters, 96 random bits
RULE = "-" * 78


def first_agent_notice(accounts: Accounts, console_url: str, var_dir: Path = VAR_DIR) -> str:
    """Make the first agent if there is no account yet; return how to log in to the console."""
    if not accounts.all():
        password = secrets.token_urlsafe(PASSWORD_BYTES)
        accounts.add(FIRST_AGENT, password)
        _write(var_dir / FIRST_AGENT_FILE, FIRST_AGENT.id, password)
        return _password_notice(console_url, FIRST_AGENT.id, password)
    kept = read_first_agent(var_dir)
    if kept is None or accounts.get(kept[0]) is None:  # accounts made with `flask agents`
        return _block(f"Console: {console_url} — log in with an agent account "
                      "(`flask agents list` lists them)")
    agent_id, password = kept
    if accounts.check_password(agent_id, password) is None:
        return _block(f"Console: {console_url} — log in as {agent_id} with the password set "
                      "for it", f"(the one make run made was changed; `flask agents passwd "
                      f"{agent_id}` sets another)")
    return _password_notice(console_url, agent_id, password)


def announce_first_agent(redis_url: str, prefix: str, console_url: str,
                         var_dir: Path = VAR_DIR) -> str:
    """Return `first_agent_notice` on the Redis at `redis_url`, or why there is none."""
    client = redis_clients.connect(redis_url, size=4)
    try:
        return first_agent_notice(Accounts(client, prefix), console_url, var_dir)
    except (redis_lib.RedisError, OSError, AccountError) as exc:  # a convenience: never fatal
        return _block(f"Console: {console_url} — no first agent account ({exc}); "
                      "`flask agents add` makes one")
    finally:
        client.close()


def read_first_agent(var_dir: Path = VAR_DIR) -> tuple[str, str] | None:
    """Return the agent id and password kept in `var_dir`, or None if none are."""
    try:
        lines = (var_dir / FIRST_AGENT_FILE).read_text().split()
    except FileNotFoundError:
        return None
    return (lines[0], lines[1]) if len(lines) == 2 else None  # the id, then the password


def _write(path: Path, agent_id: str, password: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.unlink(missing_ok=True)  # so the new file is made with its mode, not an old one's
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as file:
        file.write(f"{agent_id}\n{password}\n")


def _password_notice(console_url: str, agent_id: str, password: str) -> str:
    return _block(f"Console: {console_url} — log in as {agent_id} with password {password}",
                  f"(made by make run; `flask agents passwd {agent_id}` changes it)")


def _block(*lines: str) -> str:
    return "\n".join([RULE, *lines, RULE])
