"""Agent accounts in the real Redis: hashed passwords, revocable API tokens, clear refusals."""

from __future__ import annotations

import time

import pytest

from routing.agents import SESSION_IDLE_S, SESSION_MAX_S, AccountError, Accounts, Agent

# Not on_cluster: accounts in-process, no socket or HTTP (tests/cluster/test_service.py has them).

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


def test_a_session_names_its_agent_until_it_ends_and_is_stored_only_as_a_digest(accounts, redis):
    accounts.add(ADA, PASSWORD)
    first, second = accounts.new_session("ada"), accounts.new_session("ada")

    assert first != second and first.startswith("ada:")
    assert accounts.session_agent(first) == "ada" and accounts.session_agent(second) == "ada"
    nonce = first.partition(":")[2]
    sessions = redis.keys("concierge:{routing}:session:*")
    stored = redis.keys("*") + [str(redis.hgetall(key)) for key in sessions]
    assert len(sessions) == 2 and not any(nonce in text for text in stored)
    accounts.end_session(first)
    assert accounts.session_agent(first) is None and accounts.session_agent(second) == "ada"
    accounts.end_session(first)  # again: nothing to do


@pytest.mark.parametrize("session_id", ["", "ada", "ada:", ":nonce", "ada:made-up", "bo:{nonce}"])
def test_a_made_up_or_borrowed_session_id_names_nobody(accounts, session_id):
    accounts.add(ADA, PASSWORD)
    accounts.add(Agent(id="bo", name="Bo", queues=["support"]), PASSWORD)
    nonce = accounts.new_session("ada").partition(":")[2]
    # ada's nonce under bo's id is no session of bo's
    assert accounts.session_agent(session_id.format(nonce=nonce)) is None


def test_a_session_is_renewed_on_use_and_ends_at_its_maximum_age(accounts, redis):
    accounts.add(ADA, PASSWORD)
    session_id = accounts.new_session("ada")
    [key] = [key for key in redis.keys("concierge:{routing}:session:*")]
    redis.expire(key, 60)  # as if it had been idle for most of SESSION_IDLE_S

    assert accounts.session_agent(session_id) == "ada"
    assert redis.ttl(key) > SESSION_IDLE_S - 60  # renewed
    redis.hset(key, "started", int(time.time()) - SESSION_MAX_S - 1)
    assert accounts.session_agent(session_id) is None
    assert not redis.exists(key)


def test_a_new_password_or_removing_the_account_ends_every_session(accounts, redis):
    accounts.add(ADA, PASSWORD)
    sessions = [accounts.new_session("ada"), accounts.new_session("ada")]
    assert accounts.set_password("ada", "another long secret") == 2
    assert [accounts.session_agent(s) for s in sessions] == [None, None]

    again = accounts.new_session("ada")
    token = accounts.new_token("ada")
    assert accounts.remove("ada") is True
    assert accounts.session_agent(again) is None and accounts.token_agent(token) is None
    assert redis.keys("concierge:{routing}:*") == []


def test_a_new_session_forgets_the_expired_ones_of_its_agent(accounts, redis):
    accounts.add(ADA, PASSWORD)
    accounts.new_session("ada")
    for key in redis.keys("concierge:{routing}:session:*"):
        redis.delete(key)  # as Redis does when it expires
    accounts.new_session("ada")
    assert redis.scard("concierge:{routing}:agent:ada:sessions") == 1
    assert redis.ttl("concierge:{routing}:agent:ada:sessions") > 0


def test_no_session_for_an_unknown_agent(accounts):
    with pytest.raises(AccountError, match="there is no agent 'nobody'"):
        accounts.new_session("nobody")
