"""What the agent socket's tests (tests/web/test_agent_*.py) share: agent accounts made in the
test process, agent sockets closed after each test, visitors who escalate, and the servers.

The servers are the suite's gunicorn with 2 workers on the session's Redis (tests/conftest.py):
- `server`: the shipped flows and queues.yaml (queue `support`, longest_idle);
- `routing_server` (and `routing_second`, another instance of it on the same Redis): a FLOWS_DIR
  holding the shipped default flow and one copy of it per queue below, each escalating to its
  own queue, and a QUEUES_FILE giving those queues every strategy, opening hours that are shut
  all day today, and a max_wait of 1 s;
- `grace_server`: agents pinged every second and given 2 s of grace.
The last two keep their own key prefix in Redis (`routing_team` and `grace_team` make their
agents), so that no other server's sweeps act on their boards.
Their files are written once per session at fixed paths, so every test module that uses one
gets the same server.

A test module imports the fixtures it uses (`from tests.web.agent_fixtures import team_fixture`);
pytest finds each by its `name`, and the functions are called `…_fixture` so that a test's
argument never shadows an import.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from redis import Redis

from routing.agents import Accounts, Agent
from tests.support.gunicorn_server import ROOT
from tests.support.ws import AgentSocket, Frame, VisitorSocket, frame_like

PASSWORD = "a-long-enough-password"
ASK = "I want to talk to a person"  # the default flow escalates to its queue on this
CONNECTING = "Connecting you with a person"  # the escalation's `say`
OFFLINE = "Our team isn't available right now"  # the default flow's no_agents path, nobody there
LEAVE_MESSAGE = "Of course: leave us a message"  # ... and when the visitor chose to leave one
ASK_EMAIL = "What's your email address?"

# The queues of `routing_server`: each has a flow of the same name, q_<queue>, escalating to it.
QUEUE_FLOWS = ("least", "manual", "closed", "brief")
MISSED_POLL_S = 0.05
DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


def flow_of(queue: str) -> str:
    """The flow of `routing_server` whose escalation goes to `queue`."""
    return f"q_{queue}"


def _closed_day() -> str:
    """A weekday that is not today (nor tomorrow) in UTC: hours on it are shut all day today."""
    return DAYS[(datetime.now(UTC) + timedelta(days=3)).weekday()]


def queues_yaml() -> str:
    return (
        "support: {strategy: longest_idle}\n"
        "least: {strategy: least_busy}\n"
        "manual: {strategy: manual}\n"
        f"closed: {{hours: {{timezone: UTC, {_closed_day()}: \"03:00-03:01\"}}}}\n"
        "brief: {strategy: manual, max_wait: 1}\n"
    )


@pytest.fixture(scope="session", name="routing_files")
def routing_files_fixture(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """Write routing_server's FLOWS_DIR and QUEUES_FILE (once, at fixed paths)."""
    base = tmp_path_factory.getbasetemp() / "agent-routing"
    flows, queues = base / "flows", base / "queues.yaml"
    if not queues.exists():
        flows.mkdir(parents=True, exist_ok=True)
        default = (ROOT / "flows" / "default.yaml").read_text()
        assert default.count("name: default") == 1 and default.count("queue: support") == 1
        (flows / "default.yaml").write_text(default)
        for queue in QUEUE_FLOWS:
            (flows / f"{flow_of(queue)}.yaml").write_text(
                default.replace("name: default", f"name: {flow_of(queue)}")
                .replace("queue: support", f"queue: {queue}"))
        queues.write_text(queues_yaml())
    return flows, queues


# Servers whose settings differ keep their own key prefix: instances on one board are one
# deployment, sharing flows, queues and grace (every instance sweeps the board's timers, so
# another's sweeper would run a max_wait or a grace by its own settings and flows).
ROUTING_PREFIX = "routing:"
GRACE_PREFIX = "grace:"


@pytest.fixture(scope="session", name="routing_server")
def routing_server_fixture(live_server, routing_files) -> str:
    flows, queues = routing_files
    return live_server(flows, QUEUES_FILE=str(queues), REDIS_PREFIX=ROUTING_PREFIX)


@pytest.fixture(scope="session", name="routing_second")
def routing_second_fixture(live_server, routing_files, routing_server) -> str:
    """A second instance of routing_server on the same Redis (another gunicorn)."""
    flows, queues = routing_files
    return live_server(flows, QUEUES_FILE=str(queues), REDIS_PREFIX=ROUTING_PREFIX,
                       CONCIERGE_TEST_INSTANCE="2")


GRACE_ENV = {"AGENT_PING_S": "1", "AGENT_GRACE_S": "2", "REDIS_PREFIX": GRACE_PREFIX}


@pytest.fixture(scope="session", name="grace_server")
def grace_server_fixture(live_server) -> str:
    return live_server(**GRACE_ENV)


# --- agents ------------------------------------------------------------------------------------


class Team:
    """Agent accounts in Redis, as `flask agents add` makes them, and their sockets."""

    def __init__(self, redis: Redis, prefix: str = "concierge:") -> None:
        self.accounts = Accounts(redis, prefix)
        # These tests never log in with a password: the cheapest Argon2id keeps setup quick.
        self.accounts.hasher = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
        self.tokens: dict[str, str] = {}
        self.sockets: list[AgentSocket] = []

    def add(self, agent_id: str, *, name: str | None = None,
            queues: tuple[str, ...] = ("support",), max_chats: int = 3,
            role: str = "agent") -> str:
        """Make an account and return an API token of it."""
        self.accounts.add(Agent(id=agent_id, name=name or agent_id.title(),
                                queues=list(queues), max_chats=max_chats, role=role), PASSWORD)
        self.tokens[agent_id] = self.accounts.new_token(agent_id)
        return self.tokens[agent_id]

    def connect(self, url: str, agent_id: str, *, available: bool = False) -> AgentSocket:
        """Open a socket of the agent (read its welcome); set it available if asked."""
        tab = AgentSocket(url, self.tokens[agent_id])
        self.sockets.append(tab)
        tab.welcomed()
        if available:
            tab.presence("available")
        return tab

    def close(self) -> None:
        for tab in self.sockets:
            tab.close()


@pytest.fixture(name="team")
def team_fixture(redis) -> Iterator[Team]:
    """Agents of the servers with the default key prefix; Redis is emptied before the test."""
    made = Team(redis)
    yield made
    made.close()


@pytest.fixture(name="routing_team")
def routing_team_fixture(redis) -> Iterator[Team]:
    """Agents of routing_server and routing_second."""
    made = Team(redis, ROUTING_PREFIX)
    yield made
    made.close()


@pytest.fixture(name="grace_team")
def grace_team_fixture(redis) -> Iterator[Team]:
    """Agents of grace_server."""
    made = Team(redis, GRACE_PREFIX)
    yield made
    made.close()


@pytest.fixture(name="make_team")
def make_team_fixture(redis) -> Iterator[Callable[[str], Team]]:
    """A factory of teams under another key prefix (`make_team("acme:")`)."""
    made: list[Team] = []

    def make(prefix: str) -> Team:
        made.append(Team(redis, prefix))
        return made[-1]

    yield make
    for one in made:
        one.close()


# --- visitors ----------------------------------------------------------------------------------


def escalate(open_visitor: Callable[..., VisitorSocket], url: str, *, flow: str | None = None,
             text: str = ASK, **hello: object) -> VisitorSocket:
    """Open a visitor socket, say hello and ask for a person (nothing is awaited after that)."""
    tab = open_visitor(url)
    tab.hello(**({"flow": flow} if flow else {}), **hello)
    tab.say(text)
    return tab


def line_up(open_visitor: Callable[..., VisitorSocket], url: str, count: int, *,
            flow: str | None = None) -> list[VisitorSocket]:
    """Escalate `count` visitors one after the other, each awaited until it is told its place
    (1, 2, …) before the next one asks: return them in the order they wait.

    Awaited, not just sent: the sockets land on either of the server's workers, and a worker
    slower to run its visitor's turn (a loaded machine) would queue that visitor behind the
    next one's, so sending in turn does not make a line in that order.
    """
    waiting: list[VisitorSocket] = []
    for position in range(1, count + 1):
        waiting.append(escalate(open_visitor, url, flow=flow))
        waiting[-1].receive_until(waiting_at(position))
    return waiting


def cid_of(tab: VisitorSocket) -> str:
    return tab.greeting.conversation


def with_agent(tab: VisitorSocket, name: str | None = None) -> Frame:
    """Await the visitor's `status` `agent`; check the agent's name; return the frame."""
    status = tab.receive_until(frame_like("status", status="agent"))[-1]
    if name is not None:
        assert status["agent"] == {"name": name}, status
    return status


def waiting_at(position: int) -> Callable[[Frame], bool]:
    """Match the visitor's `status` `queued` at `position`."""
    return lambda frame: (frame.get("type") == "status" and frame.get("status") == "queued"
                          and frame.get("position") == position)


def queued_with_position(frame: Frame) -> bool:
    return frame.get("type") == "status" and frame.get("status") == "queued" and \
        "position" in frame


def assigned_frame(cid: str) -> Callable[[Frame], bool]:
    """Match the agent's `assigned` of conversation `cid`."""
    return lambda frame: frame.get("type") == "assigned" and \
        frame["conversation"].get("id") == cid


def listing(cid: str) -> Callable[[Frame], bool]:
    """Match a `queue` frame whose waiting list holds `cid`."""
    return lambda frame: frame.get("type") == "queue" and any(
        item["conversation"] == cid for item in frame["waiting"])


def missed_of(tab: AgentSocket, cid: str, timeout: float = 5.0) -> Frame:
    """Ask for `missed` until `cid` is listed; return its entry (fail if it never is).

    Asked again rather than once: the entry is written just after the turn that the visitor
    sees (the bot's no_agents answer), and nothing rings when it is.
    """
    deadline = time.monotonic() + timeout
    while True:
        tab.send({"type": "missed"})
        answer = tab.receive_until(frame_like("missed"))[-1]
        found = [item for item in answer["conversations"] if item["conversation"] == cid]
        assert len(found) <= 1, answer
        if found:
            return found[0]
        assert time.monotonic() < deadline, f"{cid} is not missed: {answer}"
        time.sleep(MISSED_POLL_S)


def refused(tab: AgentSocket, code: str, *names: str) -> Frame:
    """Read up to the next `error` (past queue and team updates); check its code and words."""
    error = tab.receive_until(frame_like("error"))[-1]
    assert error["code"] == code and error["message"], error
    for name in names:
        assert name in error["message"], error
    return error
