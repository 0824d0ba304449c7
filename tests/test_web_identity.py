"""The web chat's security pieces without a server: sessions, addresses, throttling, uploads, escaping."""

from __future__ import annotations

import ipaddress
import logging
from pathlib import Path

import pytest

from adapters.web.guard import allowed, session_cookie
from adapters.web.markup import escape_html, escape_markdown
from adapters.web.session import Visitor
from adapters.web.sessions import SessionStore, client_address, is_https, parse_proxies, valid_token
from adapters.web.throttle import FREE_GUESSES, SignInThrottle
from adapters.web.uploads import UploadLedger


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- addresses and proxies -------------------------------------------------------------------------

def test_forwarded_addresses_count_only_from_a_named_proxy() -> None:
    spoofed = {"x-forwarded-for": "10.9.9.9, 198.51.100.1"}
    assert client_address("203.0.113.5", spoofed, ()) == "203.0.113.5"  # no proxy named: the header is ignored
    proxies = parse_proxies("127.0.0.1, 10.0.0.0/8")
    assert client_address("203.0.113.5", spoofed, proxies) == "203.0.113.5"  # not from the proxy
    # From the proxy: the rightmost address that is not a proxy; what the client wrote left of it is ignored.
    assert client_address("127.0.0.1", {"x-forwarded-for": "6.6.6.6, 198.51.100.1, 10.1.1.1"},
                          proxies) == "198.51.100.1"
    assert client_address("127.0.0.1", {}, proxies) == "127.0.0.1"
    assert is_https("http", "127.0.0.1", {"x-forwarded-proto": "https"}, proxies)
    assert not is_https("http", "203.0.113.5", {"x-forwarded-proto": "https"}, proxies)
    assert is_https("https", None, {}, ())
    with pytest.raises(ValueError, match=r"'proxy\.example' is not an IP address"):
        parse_proxies("127.0.0.1,proxy.example")
    assert parse_proxies("") == () and parse_proxies("::1") == (ipaddress.ip_network("::1"),)


def test_bad_proxy_settings_stop_the_start(monkeypatch: pytest.MonkeyPatch) -> None:
    from bot.settings import load_settings
    from core.errors import ConfigError

    monkeypatch.setenv("CLIPBOT_WEB_TRUSTED_PROXIES", "10.0.0.0/8,not-an-address")
    with pytest.raises(ConfigError, match=r"CLIPBOT_WEB_TRUSTED_PROXIES.*'not-an-address'"):
        load_settings(None)


# -- sessions ----------------------------------------------------------------------------------------

def test_a_session_is_its_cookie_with_an_expiry_and_a_sign_out() -> None:
    clock = Clock()
    store = SessionStore(3600, clock=clock)
    guest = store.identify(None, "203.0.113.5")
    assert guest.token is None and guest.name is None and guest.rate_key == "web-address:203.0.113.5"
    token = store.sign_in("alice", guest)
    alice = store.identify(token, "198.51.100.1")
    assert alice.name == "alice" and alice.rate_key == "web:alice" and alice.owner.startswith("cookie:")
    assert store.identify(token[:-1] + "x", "198.51.100.1").name is None  # a guessed token is a guest
    assert valid_token("<script>") is None and store.identify("../../etc", "1.2.3.4").token is None
    clock.now += 3601
    assert store.identify(token, "198.51.100.1").name is None and len(store) == 0  # expired
    token = store.sign_in("alice", alice)
    fresh = store.signed_out(store.identify(token, "198.51.100.1"))
    assert store.identify(token, "198.51.100.1").name is None and store.identify(fresh, "x").name is None
    assert session_cookie("t", https=True, max_age=60) == "clipbot_session=t; Path=/; HttpOnly; SameSite=Strict; " \
                                                         "Max-Age=60; Secure"


def test_a_tab_belongs_to_the_browser_that_opened_it() -> None:
    store = SessionStore(3600)
    browser = store.identify("B" * 43, "203.0.113.5")
    tab = Visitor()
    assert tab.adopt(browser) is tab and tab.owner == browser.owner
    tab.remember([{"role": "user", "content": ["hello"]}])
    thief = store.identify("C" * 43, "203.0.113.5")
    other = tab.adopt(thief)  # someone else's cookie on this tab's session_hash
    assert other is not tab and other.history == [] and tab.owner == browser.owner
    assert tab.adopt(store.identify(None, "203.0.113.5")) is not tab  # no cookie: no tab
    signed = store.identify(store.sign_in("alice", browser), "203.0.113.5")  # the same browser, a new token
    assert tab.adopt(signed) is tab and tab.name == "alice" and tab.history  # its thread goes on
    assert tab.adopt(browser) is not tab  # the old token no longer owns it
    out = store.identify(store.signed_out(signed), "203.0.113.5")
    assert tab.adopt(out) is tab and tab.name is None and tab.history == []  # signing out clears the thread


def test_a_tab_keeps_a_bounded_thread() -> None:
    tab = Visitor()
    for n in range(300):
        thread = tab.remember([{"role": "user", "content": [str(n)]}])
    assert len(thread) == 200 and thread[-1]["content"] == ["299"]


# -- throttling ----------------------------------------------------------------------------------------

def test_wrong_guesses_wait_longer_and_longer() -> None:
    clock = Clock()
    throttle = SignInThrottle(clock=clock)
    guesses = 0
    for _ in range(60):  # a guesser trying once a second for a minute, only when allowed
        if throttle.wait("alice", "6.6.6.6") == 0:
            throttle.failed("alice", "6.6.6.6")
            guesses += 1
        clock.now += 1
    assert FREE_GUESSES < guesses <= 11  # about ten a minute
    for _ in range(3600):
        if throttle.wait("alice", "6.6.6.6") == 0:
            throttle.failed("alice", "6.6.6.6")
            guesses += 1
        clock.now += 1
    assert guesses <= 18  # an hour later, a handful more (the waits reach 15 minutes)
    assert throttle.wait("alice", "198.51.100.1") == 0  # the real user's address is not slowed down
    assert 0 < throttle.wait("alice", "6.6.6.6") <= 15 * 60


def test_one_address_across_many_accounts_is_slowed_and_success_resets(caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    throttle = SignInThrottle(clock=clock)
    for n in range(20):
        assert throttle.wait(f"user{n}", "6.6.6.6") == 0
        throttle.failed(f"user{n}", "6.6.6.6")
    assert throttle.wait("someone-else", "6.6.6.6") > 0
    for _ in range(4):
        throttle.failed("bob", "198.51.100.1")
    throttle.succeeded("bob", "198.51.100.1")
    assert throttle.wait("bob", "198.51.100.1") == 0
    with caplog.at_level(logging.WARNING, logger="adapters.web.throttle"):
        for n in range(25):
            throttle.failed("carol", f"198.51.100.{n}")
    [line] = [r.getMessage() for r in caplog.records]
    assert "20 wrong passwords for account 'carol' in the last minute from 20 addresses" in line


# -- uploads ---------------------------------------------------------------------------------------------

def test_only_the_uploaders_own_files_inside_the_folder_are_handed_out(tmp_path: Path) -> None:
    folder = tmp_path / "uploads"
    (folder / "a").mkdir(parents=True)
    mine = folder / "a" / "cat.jpg"
    mine.write_bytes(b"x")
    (tmp_path / "secret").write_text("token")
    (folder / "a" / "link.jpg").symlink_to(tmp_path / "secret")
    ledger = UploadLedger(folder, guest_bytes_per_hour=100)
    ledger.record("cookie:me", [str(mine), str(folder / "a" / "link.jpg"), "/etc/passwd"])
    assert ledger.owned("cookie:me", str(mine)) == mine.resolve()
    assert ledger.owned("cookie:you", str(mine)) is None
    for path in ("/etc/passwd", str(folder / "a" / "link.jpg"), f"{folder}/a/../../secret", str(folder), "",
                 f"{mine}\x00.png"):
        assert ledger.owned("cookie:me", path) is None, path
    ledger.discard(mine.resolve())
    assert not mine.exists() and ledger.owned("cookie:me", str(mine)) is None


def test_guest_upload_bytes_are_capped_per_address_per_hour(tmp_path: Path) -> None:
    clock = Clock()
    ledger = UploadLedger(tmp_path, guest_bytes_per_hour=100, clock=clock)
    assert ledger.retry_after("1.1.1.1", 60) is None
    ledger.charge("1.1.1.1", 60)
    clock.now += 600
    ledger.charge("1.1.1.1", 30)
    assert ledger.retry_after("1.1.1.1", 20) == pytest.approx(3000)  # once the first 60 bytes age out
    assert ledger.retry_after("2.2.2.2", 20) is None and ledger.retry_after("2.2.2.2", 101) == 3600
    clock.now += 3001
    assert ledger.retry_after("1.1.1.1", 20) is None


# -- routes and escaping -----------------------------------------------------------------------------------

def test_only_the_pages_routes_are_served() -> None:
    for method, path in (("GET", "/"), ("GET", "/assets/index-x.js"), ("POST", "/gradio_api/queue/join"),
                         ("GET", "/gradio_api/file=/tmp/gradio/a/b.png"), ("HEAD", "/"), ("POST", "/auth/sign-in")):
        assert allowed(method, path), path
    for method, path in (("GET", "/monitoring"), ("GET", "/config"), ("POST", "/gradio_api/run/predict"),
                         ("GET", "/gradio_api/deep_link"), ("GET", "/openapi.json"), ("POST", "/"),
                         ("GET", "/gradio_api/queue/join"), ("DELETE", "/auth/sign-in"), ("PUT", "/gradio_api/upload")):
        assert not allowed(method, path), path


@pytest.mark.parametrize("text", [
    "<img src=x onerror=alert(1)>", "[pay](http://phish.example)", "**bold** _it_ `code`", "# heading",
    "http://phish.example/x", "www.phish.example", "a & b < c > d \"q\" 'q'", "![x](http://t.example/p.png)",
    "1. list\n- item\n> quote", "| a | b |",
])
def test_user_text_is_escaped_for_markdown_and_html(text: str) -> None:
    escaped = escape_markdown(text)
    assert not any(c in escaped for c in "<>\"'") and "](" not in escaped and "://" not in escaped
    assert "www." not in escaped and "**" not in escaped
    assert escape_html(text).count("<") == 0 and escape_html("a\nb") == "a\nb"


async def test_the_page_hands_out_the_cookie_and_a_link_from_elsewhere_reloads_it() -> None:
    from adapters.web.guard import WebGuard

    served: list[str] = []

    async def app(scope: dict, receive: object, send) -> None:  # type: ignore[no-untyped-def]
        served.append(scope["path"])
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"access-control-allow-origin", b"http://localhost:1")]})
        await send({"type": "http.response.body", "body": b"page"})

    guard = WebGuard(app, sessions=SessionStore(60), uploads=UploadLedger("/nonexistent", guest_bytes_per_hour=1),
                     max_file_bytes=1)

    async def get(path: str, **headers: str) -> dict[str, str]:
        sent: list[dict] = []

        async def send(message: dict) -> None:
            sent.append(message)

        scope = {"type": "http", "method": "GET", "path": path, "client": ("203.0.113.9", 1), "scheme": "http",
                 "headers": [(k.encode(), v.encode()) for k, v in headers.items()]}
        await guard(scope, None, send)  # type: ignore[arg-type]
        answer = {k.decode(): v.decode() for k, v in sent[0]["headers"]}
        return answer | {"status": str(sent[0]["status"]), "body": sent[1]["body"].decode()}

    first = await get("/", **{"sec-fetch-site": "none"})
    assert first["set-cookie"].startswith("clipbot_session=") and first["x-frame-options"] == "DENY"
    assert "access-control-allow-origin" not in first
    assert "set-cookie" not in await get("/assets/index.js")  # only the page hands it out
    away = await get("/", **{"sec-fetch-site": "cross-site"})
    assert "http-equiv=\"refresh\"" in away["body"] and "set-cookie" not in away and served.count("/") == 1
    kept = await get("/", cookie="clipbot_session=" + "K" * 43, **{"sec-fetch-site": "cross-site"})
    assert kept["body"] == "page" and "set-cookie" not in kept
    assert (await get("/monitoring"))["status"] == "404"
