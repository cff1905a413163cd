"""Agent accounts in the real Redis: hashed passwords, revocable API tokens, clear refusals."""

from __future__ import annotations

import pytest

from routing.agents import AccountError, Accounts, Agent

PASSWORD = "correct horse battery"
ADA = Agent(id="ada", name="Ada L.", queues=["support", "billing"], max_chats=3)


@pytest.fixture
def accounts(redis) -> Accounts:
    return Accounts(redis, "concierge:")


def test_an_account_keeps_its_settings_and_never_its_password_in_the_clear(accounts, redis):
    accounts.add(ADA, PASSWORD)

    assert accounts.get("ada") == ADA
    assert [agent.id for agent in accounts.all()] == ["ada"]
    stored = redis.hget("concierge:{routing}:agent:ada", "password")
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_the_right_password_opens_the_account_and_any_other_does_not(accounts):
    accounts.add(ADA, PASSWORD)
    assert accounts.check_password("ada", PASSWORD) == ADA
    assert accounts.check_password("ada", PASSWORD + "!") is None
    assert accounts.check_password("nobody", PASSWORD) is None
    accounts.set_password("ada", "another long secret")
    assert accounts.check_password("ada", PASSWORD) is None
    assert accounts.check_password("ada", "another long secret") == ADA


def test_api_tokens_name_their_agent_until_revoked_and_are_stored_only_as_digests(
        accounts, redis):
    accounts.add(ADA, PASSWORD)
    first, second = accounts.new_token("ada"), accounts.new_token("ada")

    assert accounts.token_agent(first) == ADA and accounts.token_agent(second) == ADA
    assert not any(first in key or second in key for key in redis.keys("*"))
    assert accounts.token_agent("made-up") is None
    assert accounts.revoke_tokens("ada") == 2
    assert accounts.token_agent(first) is None and accounts.token_agent(second) is None


def test_removing_an_account_revokes_its_tokens(accounts):
    accounts.add(ADA, PASSWORD)
    token = accounts.new_token("ada")
    assert accounts.remove("ada") is True
    assert accounts.get("ada") is None and accounts.token_agent(token) is None
    assert accounts.remove("ada") is False


@pytest.mark.parametrize(("agent", "says"), [
    (Agent(id="Ada Lovelace", name="Ada", queues=["support"]), "lower-case letters"),
    (Agent(id="ada", name=" ", queues=["support"]), "--name"),
    (Agent(id="ada", name="Ada", queues=[]), "--queues"),
    (Agent(id="ada", name="Ada", queues=["Sup port"]), "not: Sup port"),
    (Agent(id="ada", name="Ada", queues=["support"], max_chats=0), "--max-chats"),
    (Agent(id="ada", name="Ada", queues=["support"], role="boss"), "--role"),
])
def test_an_account_that_breaks_a_rule_is_refused_saying_which(accounts, agent, says):
    with pytest.raises(AccountError, match=says):
        accounts.add(agent, PASSWORD)
    assert accounts.all() == []


def test_a_short_password_and_a_taken_id_are_refused(accounts):
    with pytest.raises(AccountError, match="at least 10 characters"):
        accounts.add(ADA, "short")
    accounts.add(ADA, PASSWORD)
    with pytest.raises(AccountError, match="there is an agent 'ada' already"):
        accounts.add(Agent(id="ada", name="Another", queues=["support"]), PASSWORD)
    assert accounts.get("ada").name == "Ada L."
