"""Console login and logout under real gunicorn: cookies, CSRF, revocable sessions, rate limits,
and the pages' security headers."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import httpx
import pytest

from app import create_app
from routing.agents import Accounts, Agent
from tests.support.process import free_port

# on_cluster by test: those about sessions and the login limits in Redis; the rest are HTTP's
# own (cookies, CSRF, redirects, headers), alike on any Redis.

PASSWORD = "correct horse battery"
ADA = Agent(id="ada", name="Ada L.", queues=["support"])
BO = Agent(id="bo", name="Bo Bianchi", queues=["support"])
CSRF_TOKEN = re.compile(r'name="csrf_token" value="([^"]+)"')
ALERT = re.compile(r'role="alert">([^<]*)<')
WRONG = "wrong agent id or password"
LIMITED_RATE = 3  # attempts an hour: no window ends while a test runs
LIMITED = {"LOGIN_RATE": f"{LIMITED_RATE}/hour", "TRUSTED_PROXY_HOPS": "1"}
PRODUCTION = {"CONCIERGE_ENV": "production", "SECRET_KEY": "test-production-key",
              "ALLOWED_ORIGINS": "https://shop.example.com"}


class Browser:
    """One browser on the console: keeps its cookies, posts forms with their CSRF token."""

    def __init__(self, base_url: str) -> None:
        self.http = httpx.Client(base_url=base_url, trust_env=False, timeout=10)

    def token(self, path: str = "/login") -> str:
        return CSRF_TOKEN.search(self.http.get(path).text).group(1)

    def log_in(self, agent_id: str, password: str, *, address: str | None = None,
               **fields: str) -> httpx.Response:
        headers = {"X-Forwarded-For": address} if address else {}
        return self.http.post("/login", headers=headers, data={
            "agent_id": agent_id, "password": password, "csrf_token": self.token(), **fields})

    def log_out(self) -> httpx.Response:
        return self.http.post("/logout", data={"csrf_token": self.token("/console")})

    def session_cookie(self) -> str:
        return self.http.cookies["session"]

    def close(self) -> None:
        self.http.close()


@pytest.fixture
def browser(server) -> Iterator[Callable[..., Browser]]:
    """Yield a factory, `browser(url=server)`, of browsers closed after the test."""
    opened: list[Browser] = []

    def open_browser(url: str = server) -> Browser:
        opened.append(Browser(url))
        return opened[-1]

    yield open_browser
    for each in opened:
        each.close()


@pytest.fixture
def accounts(redis) -> Accounts:
    accounts = Accounts(redis, "concierge:")
    accounts.add(ADA, PASSWORD)
    accounts.add(BO, PASSWORD)
    return accounts


@pytest.fixture(scope="module")
def limited_server(live_server) -> str:
    """Return the app allowing LIMITED_RATE logins an hour, behind one trusted proxy."""
    return live_server(**LIMITED)


def opens_console(base_url: str, cookie: str) -> bool:
    """Tell whether a request carrying only this session cookie is let into the console."""
    response = httpx.get(f"{base_url}/console", headers={"Cookie": f"session={cookie}"},
                         trust_env=False)
    return response.status_code == 200


@pytest.mark.on_cluster
def test_a_good_login_opens_the_console_with_an_httponly_samesite_lax_cookie(
        server, browser, accounts):
    ada = browser()
    response = ada.log_in("ada", PASSWORD)

    assert response.status_code == 302 and response.headers["Location"] == "/console"
    cookie = response.headers["Set-Cookie"]
    assert cookie.startswith("session=") and "HttpOnly" in cookie and "SameSite=Lax" in cookie
    assert "Secure" not in cookie  # development: plain http on loopback
    console = ada.http.get("/console")
    assert console.status_code == 200 and "Ada L." in console.text
    assert ada.http.get("/login").headers["Location"] == "/console"  # logged in already


def test_in_production_the_session_cookie_is_secure_too(live_server, accounts):
    url = live_server(**PRODUCTION)
    # A Secure cookie is not sent back over plain http by a client: carry it by hand.
    form = httpx.get(f"{url}/login", trust_env=False)
    assert "Secure" in form.headers["Set-Cookie"]
    cookie = form.cookies["session"]
    response = httpx.post(f"{url}/login", headers={"Cookie": f"session={cookie}"}, data={
        "agent_id": "ada", "password": PASSWORD,
        "csrf_token": CSRF_TOKEN.search(form.text).group(1)}, trust_env=False)

    assert response.status_code == 302
    set_cookie = response.headers["Set-Cookie"]
    assert all(part in set_cookie for part in ("Secure", "HttpOnly", "SameSite=Lax"))


def test_a_wrong_password_and_an_unknown_agent_get_the_same_401(server, browser, accounts):
    tries = {browser(): ("ada", "not her password"), browser(): ("nobody", PASSWORD)}

    for client, (agent_id, password) in tries.items():
        response = client.log_in(agent_id, password)
        assert response.status_code == 401
        assert ALERT.search(response.text).group(1) == WRONG
        assert CSRF_TOKEN.search(response.text)  # the form again, ready for another try
        assert client.http.get("/console").status_code == 302


@pytest.mark.parametrize("token", [None, "made-up"], ids=["without", "wrong"])
def test_a_post_without_its_csrf_token_is_refused_and_logs_nobody_in(server, browser, accounts,
                                                                     token):
    ada = browser()
    ada.token()  # a session with a token of its own
    data = {"agent_id": "ada", "password": PASSWORD, **({"csrf_token": token} if token else {})}
    response = ada.http.post("/login", data=data)

    assert response.status_code == 400
    assert "This form has expired" in response.text and "Reload the page" in response.text
    assert ada.http.get("/console").status_code == 302


def test_the_console_sends_a_stranger_to_the_login_and_back(server, browser, accounts):
    stranger = browser()
    response = stranger.http.get("/console")
    assert response.status_code == 302 and response.headers["Location"] == "/login?next=%2Fconsole"

    form = stranger.http.get(response.headers["Location"])
    assert 'name="next" value="/console"' in form.text
    logged_in = stranger.log_in("ada", PASSWORD, next="/console")
    assert logged_in.headers["Location"] == "/console"


@pytest.mark.parametrize(("target", "goes_to"), [
    ("/console?tab=queues", "/console?tab=queues"),
    ("https://evil.example/console", "/console"),
    ("//evil.example/console", "/console"),
    ("/\\evil.example", "/console"),
    ("javascript:alert(1)", "/console"),
    ("console", "/console"),
])
def test_after_a_login_only_a_path_of_this_site_is_followed(server, browser, accounts, target,
                                                            goes_to):
    response = browser().log_in("ada", PASSWORD, next=target)
    assert response.status_code == 302 and response.headers["Location"] == goes_to


@pytest.mark.on_cluster
def test_a_logout_ends_the_session_so_the_old_cookie_no_longer_opens_the_console(
        server, browser, accounts, redis):
    ada = browser()
    ada.log_in("ada", PASSWORD)
    cookie = ada.session_cookie()
    assert opens_console(server, cookie)

    response = ada.log_out()
    assert response.status_code == 302 and response.headers["Location"] == "/login"
    assert not opens_console(server, cookie)  # replayed: the session ended in Redis
    assert redis.keys("concierge:{routing}:session:*") == []


@pytest.mark.on_cluster
@pytest.mark.parametrize("change", ["passwd", "remove"])
def test_a_new_password_or_a_removed_account_ends_the_sessions(server, browser, accounts,
                                                               change):
    ada = browser()
    ada.log_in("ada", PASSWORD)
    bo = browser()
    bo.log_in("bo", PASSWORD)
    cookie = ada.session_cookie()

    if change == "passwd":
        accounts.set_password("ada", "another long secret")
    else:
        accounts.remove("ada")
    assert not opens_console(server, cookie)
    assert opens_console(server, bo.session_cookie())  # nobody else's


@pytest.mark.on_cluster
def test_the_limit_per_address_holds_whichever_accounts_it_tries(limited_server, browser,
                                                                 accounts):
    client = browser(limited_server)
    for attempt in range(LIMITED_RATE):
        assert client.log_in(f"a{attempt}", PASSWORD, address="203.0.113.1").status_code == 401

    refused = client.log_in("ada", PASSWORD, address="203.0.113.1")
    assert refused.status_code == 429
    assert re.fullmatch(r"Too many login attempts\. Wait about \d+ minutes and try again\.",
                        ALERT.search(refused.text).group(1))
    assert 0 < int(refused.headers["Retry-After"]) <= 3601
    assert CSRF_TOKEN.search(refused.text)  # the login page, not a bare error
    assert client.log_in("ada", PASSWORD, address="203.0.113.2").status_code == 302


@pytest.mark.on_cluster
def test_the_limit_per_account_holds_from_any_address_and_spares_other_accounts(
        limited_server, browser, accounts):
    client = browser(limited_server)
    for attempt, typed in enumerate(["ada", " ADA ", "Ada"]):  # one account, however typed
        response = client.log_in(typed, "a guess", address=f"198.51.100.{attempt + 1}")
        assert response.status_code == 401

    refused = client.log_in("ada", PASSWORD, address="198.51.100.50")  # even the right one
    assert refused.status_code == 429 and "Too many login attempts" in refused.text
    assert client.log_in("bo", PASSWORD, address="198.51.100.51").status_code == 302


def test_the_pages_forbid_inline_code_framing_sniffing_and_caching(server, browser, accounts):
    ada = browser()
    pages = [ada.http.get("/login"), ada.log_in("ada", "wrong"), ada.http.post("/login")]
    ada.log_in("ada", PASSWORD)
    pages.append(ada.http.get("/console"))

    for page in pages:
        policy = page.headers["Content-Security-Policy"]
        assert "unsafe-inline" not in policy and "unsafe-eval" not in policy
        for directive in ("default-src 'self'", "script-src 'self'", "style-src 'self'",
                          "frame-ancestors 'none'", "base-uri 'none'", "form-action 'self'"):
            assert directive in policy
        assert page.headers["X-Content-Type-Options"] == "nosniff"
        assert page.headers["Referrer-Policy"] == "same-origin"
        assert page.headers["Cache-Control"] == "no-store"
        assert "<style" not in page.text  # scripts only from our files, never inline
        assert all(' src="/static/' in tag for tag in re.findall(r"<script[^>]*>", page.text))
        assert "style=" not in page.text
        assert '<html lang="en">' in page.text and re.search(r"<main[ >]", page.text)
    stylesheet = ada.http.get("/static/console/login.css")
    assert stylesheet.status_code == 200 and stylesheet.headers["Content-Type"].startswith(
        "text/css")


def test_the_other_routes_are_neither_limited_nor_csrf_checked(limited_server, browser):
    client = browser(limited_server)
    for _ in range(LIMITED_RATE + 1):
        assert client.http.get("/healthz").status_code == 200
        assert client.http.get("/demo/api/orders/AB123456").status_code == 200
        assert client.http.get("/login").status_code == 200


def test_without_redis_a_login_is_a_503_page_not_a_traceback(minimal_flows_dir):
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    client = create_app({"FLOWS_DIR": minimal_flows_dir, "REDIS_URL": dead}).test_client()
    form = client.get("/login")
    assert form.status_code == 200  # showing the form needs no Redis

    response = client.post("/login", data={"agent_id": "ada", "password": PASSWORD,
                                           "csrf_token": CSRF_TOKEN.search(form.text).group(1)})
    assert response.status_code == 503
    assert "The console is unavailable" in response.text and "Traceback" not in response.text
    assert response.headers["Retry-After"] and response.headers["Cache-Control"] == "no-store"
