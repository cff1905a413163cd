"""`flask agents …`: make, list and remove accounts, set passwords, issue and revoke API tokens.

Removing an account or setting its password also ends its console sessions (routing/agents.py).
"""

from __future__ import annotations

import sys

import click
import redis as redis_lib
from flask import current_app
from flask.cli import AppGroup

from runtime import redis_clients
from runtime.config import VAR_DIR
from runtime.embedded_redis import running_url

from .agents import AccountError, Accounts, Agent

agents_cli = AppGroup("agents", help="Manage the accounts of the people who answer chats.")
EMBEDDED_DIR = VAR_DIR / "redis"  # where `make run` keeps its Redis (gunicorn.conf.py)


def _accounts() -> Accounts:
    # development: without REDIS_URL, the Redis a running `make run` started
    url = current_app.config.get("REDIS_URL") or running_url(EMBEDDED_DIR)
    if not url:
        raise click.ClickException("no Redis to keep accounts in: set REDIS_URL, or start "
                                   "`make run` first (its Redis lives in var/redis/)")
    client = redis_clients.connect(url, size=4)  # one Redis or a cluster, as the server's
    try:
        client.ping()
    except (redis_lib.RedisError, OSError) as exc:
        raise click.ClickException(f"Redis does not answer ({exc})") from None
    return Accounts(client, current_app.config["REDIS_PREFIX"])


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _run(action, *args):  # noqa: ANN001, ANN202 - a thin wrapper for every command
    try:
        return action(*args)
    except AccountError as exc:
        raise click.ClickException(str(exc)) from None


@agents_cli.command("add")
@click.argument("agent_id")
@click.option("--name", required=True, help="as visitors see it: \"Ada L.\"")
@click.option("--queues", required=True, help="comma-separated: support,billing")
@click.option("--max-chats", type=int, default=3, show_default=True,
              help="conversations at once")
@click.option("--role", type=click.Choice(["agent", "lead"]), default="agent",
              show_default=True, help="a lead also sees every queue and agent")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
def add(agent_id: str, name: str, queues: str, max_chats: int, role: str,
        password_stdin: bool) -> None:
    """Make an account (asks for its password)."""
    agent = Agent(id=agent_id, name=name, max_chats=max_chats, role=role,
                  queues=[q.strip() for q in queues.split(",") if q.strip()])
    accounts = _accounts()
    _run(accounts.add, agent, _password(password_stdin))
    click.echo(f"added {agent.role} '{agent.id}' ({agent.name}): queues "
               f"{', '.join(agent.queues)}, up to {agent.max_chats} chats at once")


@agents_cli.command("list")
def list_agents() -> None:
    """List every account."""
    agents = _accounts().all()
    if not agents:
        click.echo("no agents yet: `flask agents add ID --name … --queues …` makes one")
    for agent in agents:
        click.echo(f"{agent.id}\t{agent.name}\t{agent.role}\tmax {agent.max_chats}\t"
                   f"{','.join(agent.queues)}")


@agents_cli.command("remove")
@click.argument("agent_id")
def remove(agent_id: str) -> None:
    """Remove an account, end its console sessions and revoke its API tokens."""
    if not _accounts().remove(agent_id):
        raise click.ClickException(f"there is no agent '{agent_id}'")
    click.echo(f"removed '{agent_id}' (its console sessions ended, its API tokens revoked)")


@agents_cli.command("passwd")
@click.argument("agent_id")
@click.option("--password-stdin", is_flag=True, help="read the password from standard input")
def passwd(agent_id: str, password_stdin: bool) -> None:
    """Set an account's password (ends the account's console sessions)."""
    accounts = _accounts()
    ended = _run(accounts.set_password, agent_id, _password(password_stdin))
    click.echo(f"password of '{agent_id}' changed; {ended} console session(s) ended")


@agents_cli.command("token")
@click.argument("agent_id")
@click.option("--revoke", is_flag=True, help="revoke every API token of the agent instead")
def token(agent_id: str, revoke: bool) -> None:
    """Print a new API token for a non-browser client (the last line of the output)."""
    accounts = _accounts()
    if revoke:
        click.echo(f"revoked {accounts.revoke_tokens(agent_id)} token(s) of '{agent_id}'")
        return
    issued = _run(accounts.new_token, agent_id)
    click.echo(f"a new API token for '{agent_id}' (shown once; `flask agents token "
               f"{agent_id} --revoke` revokes every one):")
    click.echo(issued)
