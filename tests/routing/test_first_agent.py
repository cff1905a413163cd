"""The first agent of `make run`: made once on an empty Redis, remembered, and announced again."""

from __future__ import annotations

import re
import stat

import pytest

from routing.agents import Accounts, Agent
from routing.first_agent import FIRST_AGENT_FILE, announce_first_agent, first_agent_notice
from tests.support.process import free_port

# Not on_cluster: make run's first account, made on its embedded (single) Redis.

CONSOLE = "http://127.0.0.1:5000/console"
PASSWORD = re.compile(r"log in as ada with password ([A-Za-z0-9_-]{16})\n")


@pytest.fixture
def accounts(redis) -> Accounts:
    return Accounts(redis, "concierge:")


def test_an_empty_redis_gets_ada_whose_password_is_kept_for_its_owner_only(accounts, tmp_path):
    notice = first_agent_notice(accounts, CONSOLE, tmp_path)

    password = PASSWORD.search(notice).group(1)
    assert f"Console: {CONSOLE}" in notice and "flask agents passwd ada" in notice
    assert accounts.check_password("ada", password) == Agent(
        id="ada", name="Ada Lovelace", queues=["support"], max_chats=3, role="lead")
    kept = tmp_path / FIRST_AGENT_FILE
    assert kept.read_text() == f"ada\n{password}\n"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600


def test_every_later_start_says_the_same_and_makes_nothing(accounts, tmp_path):
    first = first_agent_notice(accounts, CONSOLE, tmp_path)
    assert first_agent_notice(accounts, CONSOLE, tmp_path) == first
    assert [agent.id for agent in accounts.all()] == ["ada"]


def test_a_changed_password_is_said_to_be_changed_not_printed_wrong(accounts, tmp_path):
    old = PASSWORD.search(first_agent_notice(accounts, CONSOLE, tmp_path)).group(1)
    accounts.set_password("ada", "set by the developer")

    notice = first_agent_notice(accounts, CONSOLE, tmp_path)
    assert old not in notice and "was changed" in notice and "flask agents passwd ada" in notice


def test_accounts_made_by_hand_are_left_alone(accounts, tmp_path):
    accounts.add(Agent(id="bo", name="Bo", queues=["support"]), "a long enough secret")

    notice = first_agent_notice(accounts, CONSOLE, tmp_path)
    assert "flask agents list" in notice and accounts.get("ada") is None
    assert not (tmp_path / FIRST_AGENT_FILE).exists()


def test_an_emptied_redis_gets_a_new_ada_and_the_file_follows(accounts, redis, tmp_path):
    old = PASSWORD.search(first_agent_notice(accounts, CONSOLE, tmp_path)).group(1)
    redis.flushall()  # var/redis deleted, say

    new = PASSWORD.search(first_agent_notice(accounts, CONSOLE, tmp_path)).group(1)
    assert new != old and accounts.check_password("ada", new) is not None
    assert (tmp_path / FIRST_AGENT_FILE).read_text() == f"ada\n{new}\n"


def test_the_announcement_dials_redis_itself_and_never_fails_the_start(redis_server, redis,
                                                                       tmp_path):
    assert PASSWORD.search(announce_first_agent(redis_server, "concierge:", CONSOLE, tmp_path))
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    assert "no first agent account" in announce_first_agent(dead, "concierge:", CONSOLE,
                                                            tmp_path)
