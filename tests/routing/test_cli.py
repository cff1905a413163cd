"""`flask agents …` against the real Redis, as a lead would type them."""

from __future__ import annotations

import pytest

from app import create_app
from routing.agents import Accounts

# Not on_cluster: `flask agents` in-process; tests/cluster/test_service.py runs it on a cluster.

PASSWORD = "correct horse battery"


@pytest.fixture
def cli(redis_server, redis, minimal_flows_dir):
    app = create_app({"REDIS_URL": redis_server, "FLOWS_DIR": minimal_flows_dir})
    runner = app.test_cli_runner()
    return lambda *args, stdin=None: runner.invoke(args=["agents", *args], input=stdin)


def test_add_list_passwd_token_and_remove(cli, redis):
    added = cli("add", "ada", "--name", "Ada L.", "--queues", "support,billing",
                "--max-chats", "2", "--role", "lead", "--password-stdin", stdin=PASSWORD + "\n")
    assert added.exit_code == 0, added.output
    assert "added lead 'ada' (Ada L.)" in added.output

    listed = cli("list")
    assert listed.output.split("\t") == ["ada", "Ada L.", "lead", "max 2", "support,billing\n"]

    accounts = Accounts(redis, "concierge:")
    assert accounts.check_password("ada", PASSWORD) is not None
    changed = cli("passwd", "ada", "--password-stdin", stdin="a new long secret\n")
    assert changed.exit_code == 0 and accounts.check_password("ada", "a new long secret")

    issued = cli("token", "ada")
    token = issued.output.strip().splitlines()[-1]  # the last line is the token
    assert accounts.token_agent(token).id == "ada"
    assert "revoked 1 token(s)" in cli("token", "ada", "--revoke").output
    assert accounts.token_agent(token) is None

    assert cli("remove", "ada").exit_code == 0 and accounts.get("ada") is None


def test_a_password_is_asked_twice_when_not_given_on_stdin(cli, redis):
    result = cli("add", "bo", "--name", "Bo", "--queues", "support",
                 stdin=f"{PASSWORD}\n{PASSWORD}\n")
    assert result.exit_code == 0, result.output
    assert Accounts(redis, "concierge:").check_password("bo", PASSWORD) is not None


@pytest.mark.parametrize(("args", "stdin", "says"), [
    (("add", "ada", "--name", "Ada", "--queues", "support", "--password-stdin"), "short\n",
     "at least 10 characters"),
    (("add", "ada", "--name", "Ada", "--queues", "", "--password-stdin"), PASSWORD + "\n",
     "--queues must name at least one queue"),
    (("remove", "nobody"), None, "there is no agent 'nobody'"),
    (("token", "nobody"), None, "there is no agent 'nobody'"),
    (("passwd", "nobody", "--password-stdin"), PASSWORD + "\n", "there is no agent 'nobody'"),
])
def test_a_mistake_is_an_error_that_says_what_to_fix_and_no_traceback(cli, args, stdin, says):
    result = cli(*args, stdin=stdin)
    assert result.exit_code == 1
    assert says in result.output and "Traceback" not in result.output


def test_without_redis_it_says_where_accounts_live(minimal_flows_dir, monkeypatch, tmp_path):
    monkeypatch.setattr("routing.cli.EMBEDDED_DIR", tmp_path)  # no `make run` running
    app = create_app({"REDIS_URL": None, "FLOWS_DIR": minimal_flows_dir})
    result = app.test_cli_runner().invoke(args=["agents", "list"])
    assert result.exit_code == 1 and "set REDIS_URL" in result.output


def test_passwd_and_remove_end_the_console_sessions(cli, redis):
    cli("add", "ada", "--name", "Ada", "--queues", "support", "--password-stdin",
        stdin=PASSWORD + "\n")
    accounts = Accounts(redis, "concierge:")
    session = accounts.new_session("ada")
    changed = cli("passwd", "ada", "--password-stdin", stdin="a new long secret\n")
    assert "1 console session(s) ended" in changed.output
    assert accounts.session_agent(session) is None

    session = accounts.new_session("ada")
    assert "console sessions ended" in cli("remove", "ada").output
    assert accounts.session_agent(session) is None
