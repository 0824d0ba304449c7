"""The web chat attacked through its raw API: each finding of the security review, and variations.

One ``clipbot web`` for the module, started as an operator would run it: a ``.env`` holding a bot
token in its working directory, a gallery with a private Telegram chat's image, two web users, a
rate limit, a small image limit and guest upload quota, and 127.0.0.1 named as a trusted proxy so
each attacker can pose as an address of its own (``X-Forwarded-For``; header text only). The
attacker (:mod:`tests.web_attacker`) speaks Gradio's queue protocol with httpx. Every secret is a
canary string: no answer may ever contain one.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

from tests.browser import clipbot_web, free_port, index_as_operator
from tests.conftest import labelled_folder, recompressed
from tests.test_web import pixel_bomb
from tests.text_pictures import needs_reader, text_picture
from tests.web_attacker import Answer, Attacker, file_data

TOKEN_CANARY = "123456:TOKEN-CANARY-d41d8cd98f00b204"
ENV_CANARY = "ENV-CANARY-9e107d9d372bb682"
PRIVATE_LABEL = "PRIVATE-CANARY-e4da3b7fbbce2345"
MAX_MB = 2
QUOTA_MB = 5
EVIL_LABEL = ('<img src="http://198.51.100.7/t.png"><div style="position:fixed;inset:0">overlay</div>'
              '<a href="http://phish.example/">pay</a><form><input type="password"></form>')
EVIL_DESCRIPTION = "<b>desc</b> [click](http://phish.example) **bold** www.phish.example"


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory, clip_dir: Path, photos: dict[str, Path]) -> Iterator[dict[str, str]]:
    """``clipbot web`` over a shared gallery and one private Telegram image; yields its URL and paths."""
    root = tmp_path_factory.mktemp("web-security")
    (root / ".env").write_text(f"TELEGRAM_BOT_TOKEN={TOKEN_CANARY}\n")
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("CLIPBOT_")},
        "CLIPBOT_CLIP_MODEL": str(clip_dir), "CLIPBOT_DATA_DIR": str(root / "data"),
        "CLIPBOT_CAPTION_MODEL": "none", "CLIPBOT_PRECISION": "fp32", "CLIPBOT_RATE_LIMIT_PER_MINUTE": "10",
        "CLIPBOT_MAX_IMAGE_MB": str(MAX_MB), "CLIPBOT_WEB_GUEST_UPLOAD_MB_PER_HOUR": str(QUOTA_MB),
        "CLIPBOT_WEB_USERS": "alice:wonderland,bob:builder", "CLIPBOT_WEB_TRUSTED_PROXIES": "127.0.0.1",
        "GRADIO_TEMP_DIR": str(root / "gradio"), "SECRET_FOR_TEST": ENV_CANARY,
    }
    shared = labelled_folder(root / "photos", {name: photos[name] for name in ("rocket", "coffee", "chelsea")})
    private = labelled_folder(root / "private", {PRIVATE_LABEL: photos["astronaut"]})
    index_as_operator(root, env, [str(shared), "--labels-from-folders"],
                      [str(private), "--labels-from-folders", "--collection", "telegram:42"])
    media = next(p for p in (root / "data").rglob("*") if p.is_file() and p.suffix.lower() in (".png", ".jpg"))
    with clipbot_web(env, free_port(), root / "web.log", cwd=root) as url:
        yield {"url": url, "root": str(root), "db": str(next((root / "data").rglob("*.db"))),
               "media": str(media), "uploads": str(root / "gradio"), "log": str(root / "web.log")}


_ADDRESSES = iter(range(1, 250))


@pytest.fixture
def attacker(site: dict[str, str]) -> Iterator[Attacker]:
    """A fresh client at an address of its own (so tests do not share a rate limit)."""
    client = Attacker(site["url"], address=f"203.0.113.{next(_ADDRESSES)}")
    yield client
    client.close()


def assert_no_secret(text: str, attacker: Attacker | None = None, answer: Answer | None = None) -> None:
    """No canary in ``text``, nor in any file the answer links to (when given)."""
    if attacker is not None and answer is not None:
        text += attacker.served(answer)
    for canary in (TOKEN_CANARY, ENV_CANARY, PRIVATE_LABEL, "root:x:0:0", "SQLite format"):
        assert canary not in text


def signed_in(site: dict[str, str], name: str = "alice", password: str = "wonderland") -> Attacker:
    client = Attacker(site["url"], address=f"203.0.113.{next(_ADDRESSES)}")
    answer = client.sign_in(name, password)
    assert answer.status_code == 200 and answer.json()["ok"], answer.text
    return client


# -- 1. no file the client names is ever opened ----------------------------------------------------

def secret_paths(site: dict[str, str]) -> list[str]:
    root = site["root"]
    return ["/etc/passwd", f"{root}/.env", site["db"], site["media"], "/proc/self/environ",
            f"{site['uploads']}/../.env", f"{site['uploads']}/%2e%2e/.env", quote(f"{root}/.env"),
            f"file://{root}/.env", "../../../../etc/passwd", f"{site['uploads']}/../../../../../etc/passwd"]


def test_a_path_in_a_messages_files_is_never_opened(site: dict[str, str], attacker: Attacker) -> None:
    for path in secret_paths(site):
        answer = attacker.send("", [file_data(path)])
        assert_no_secret(answer.raw, attacker, answer)
        assert f"file={path}" not in answer.raw and "file=/etc" not in answer.raw, path
        if answer.ok:  # past Gradio's own check (a path that does not resolve there): ours refuses it
            assert "was not uploaded from this page" in answer.text, path


@pytest.mark.parametrize("field", ["path", "url", "orig_name"])
def test_every_file_data_field_is_refused(site: dict[str, str], attacker: Attacker, field: str) -> None:
    target = f"{site['root']}/.env"
    value = {"path": target, "url": f"{site['url']}gradio_api/file={target}", "orig_name": target}[field]
    data = file_data("x.jpg") | {field: value}
    answer = attacker.send("", [data])
    assert_no_secret(answer.raw, attacker, answer)
    assert "TELEGRAM_BOT_TOKEN" not in answer.raw + attacker.served(answer)


def test_a_history_sent_by_the_client_is_not_the_thread(site: dict[str, str], attacker: Attacker) -> None:
    """The old handlers took the chat history from the client: a path placed there was served."""
    forged = [{"role": "user", "content": [file_data(f"{site['root']}/.env")]},
              {"role": "assistant", "content": [{"path": "/etc/passwd"}]}]
    fn_index, dep = attacker.dependency("clipbot-box", "submit")
    assert len(dep["inputs"]) == 2  # the message and the tab's state: no history comes in
    for data in ([{"text": "coffee", "files": []}, forged, None], [{"text": "coffee", "files": []}, forged]):
        answer = attacker.call_fn(fn_index, data)
        assert_no_secret(answer.raw, attacker, answer)
    option, dep = attacker.dependency("clipbot-chat", "option_select")
    assert attacker.component("clipbot-chat") not in dep["inputs"]
    assert_no_secret(attacker.call_fn(option, [forged, None], event_data={"index": 0, "value": "x"}).raw)


def test_a_symlink_in_the_upload_folder_is_not_followed(site: dict[str, str], attacker: Attacker) -> None:
    folder = Path(site["uploads"]) / "planted"
    folder.mkdir(parents=True, exist_ok=True)
    link = folder / "cat.jpg"
    link.unlink(missing_ok=True)
    link.symlink_to(Path(site["root"]) / ".env")
    answer = attacker.send("", [file_data(str(link))])
    assert_no_secret(answer.raw, attacker, answer)
    assert "TELEGRAM" not in answer.raw + attacker.served(answer)


def test_another_browsers_upload_is_not_theirs_to_use(site: dict[str, str], attacker: Attacker,
                                                      photos: dict[str, Path]) -> None:
    bob = Attacker(site["url"], address="203.0.113.250")
    [path] = bob.upload("mine.jpg", recompressed(photos["chelsea"])).json()
    answer = attacker.send("", [file_data(path)])
    assert "was not uploaded from this page" in answer.text and "Score" not in answer.text
    assert "Score" in bob.send("", [file_data(path)]).text  # its owner can
    bob.close()


def test_file_routes_refuse_everything_outside_the_apps_files(site: dict[str, str], attacker: Attacker) -> None:
    for path in secret_paths(site):
        response = attacker.get(f"/gradio_api/file={path}")
        assert response.status_code in (403, 404), path
        assert_no_secret(response.text)


def test_a_gallery_add_with_foreign_paths_stores_nothing(site: dict[str, str]) -> None:
    alice = signed_in(site)
    answer = alice.call("clipbot-add-button", "click",
                        [None, [file_data(site["media"]), file_data("/etc/passwd")], "stolen", "", "", "any colour",
                         ""])
    assert_no_secret(answer.raw, alice, answer)
    assert "stolen" not in answer.text or "was not uploaded from this page" in answer.text
    assert "Added 1" not in answer.text and "Added 2" not in answer.text
    alice.close()


# -- 2. text is text ---------------------------------------------------------------------------------

def test_html_in_labels_comes_back_escaped(site: dict[str, str], photos: dict[str, Path]) -> None:
    alice = signed_in(site)
    [path] = alice.upload("flower.jpg", recompressed(photos["flower"])).json()
    added = alice.send(f"/add {EVIL_LABEL} | {EVIL_DESCRIPTION}", [file_data(path)])
    assert "Added #" in added.text, added.raw
    found = alice.send("overlay")
    assert "&lt;img src=" in found.raw and "&lt;form&gt;" in found.raw
    for markup in ("<img", "<form", "<a href", "<div style", "<input", "<b>"):
        assert markup not in found.raw
    alice.close()


def test_the_text_read_in_a_photo_comes_back_escaped(site: dict[str, str], attacker: Attacker) -> None:
    needs_reader()
    picture = text_picture(("SUNFLOWER42", "<img src=x onerror=alert(1)>"), size=40)
    [path] = attacker.upload("sign.png", picture).json()
    answer = attacker.send("/read", [file_data(path)])
    reply = answer.data[0][-1]["content"][-1]["text"]  # the bot's message, as the page gets it
    assert reply.startswith("The text in this picture:\nSUNFLOWER42\n"), answer.raw
    assert "&lt;img src=x onerror=alert(1)&gt;" in reply and "<img" not in answer.raw
    assert "/read (with a photo attached)" in attacker.send("/help").data[0][-1]["content"][-1]["text"]


# -- 3. a session is its cookie ---------------------------------------------------------------------

def test_a_replayed_session_hash_without_the_cookie_is_a_guest(site: dict[str, str],
                                                               photos: dict[str, Path]) -> None:
    alice = signed_in(site)
    [path] = alice.upload("rocket.jpg", recompressed(photos["rocket"])).json()
    added = alice.send("/add replay-target | mine", [file_data(path)])
    image_id = re.search(r"Added #(\d+)", added.text)
    assert image_id, added.raw
    thief = Attacker(site["url"], address="203.0.113.251")
    stolen = thief.send(f"/delete {image_id.group(1)}", session=alice.session)  # her tab's session_hash
    assert "Sign in to delete" in stolen.text and "replay-target" not in stolen.text
    forged = Attacker(site["url"], address="203.0.113.252")
    forged.http.cookies.clear()
    forged.http.cookies.set("clipbot_session", "A" * 43)
    assert "Sign in to delete" in forged.send(f"/delete {image_id.group(1)}", session=alice.session).text
    assert "Deleted" not in stolen.text
    # Signing out ends the cookie itself: replayed afterwards, it is a guest's.
    cookie = alice.http.cookies.get("clipbot_session")
    assert alice.post("/auth/sign-out").status_code == 200
    replay = Attacker(site["url"], address="203.0.113.253")
    replay.http.cookies.clear()
    replay.http.cookies.set("clipbot_session", cookie or "")
    assert "Sign in to delete" in replay.send(f"/delete {image_id.group(1)}").text
    for client in (alice, thief, forged, replay):
        client.close()


def test_the_session_cookie_is_http_only_and_strict(site: dict[str, str]) -> None:
    response = httpx.post(site["url"] + "auth/sign-in", json={"name": "bob", "password": "builder"},
                          headers={"x-forwarded-for": "203.0.113.254"})
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("clipbot_session=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Max-Age=" in cookie and "Secure" not in cookie  # plain HTTP here; behind TLS it is Secure
    https = httpx.post(site["url"] + "auth/sign-in", json={"name": "bob", "password": "builder"},
                       headers={"x-forwarded-for": "203.0.113.254", "x-forwarded-proto": "https"})
    assert "Secure" in https.headers["set-cookie"]


def test_deep_links_and_session_files_are_off(attacker: Attacker) -> None:
    for url in (f"/gradio_api/deep_link?session_hash={attacker.session}", "/gradio_api/deep_link"):
        assert attacker.get(url).status_code == 404


# -- 4. guessing costs the guesser ------------------------------------------------------------------

def test_thirty_fast_wrong_passwords_are_throttled_and_the_real_user_is_not(site: dict[str, str]) -> None:
    guesser = Attacker(site["url"], address="198.51.100.10")
    statuses = []
    started = time.monotonic()
    for n in range(30):
        statuses.append(guesser.sign_in("alice", f"guess{n}").status_code)
    elapsed = time.monotonic() - started
    checked = statuses.count(200)
    assert 5 <= checked <= 7 and statuses.count(429) == 30 - checked, statuses
    assert elapsed < 20  # refused guesses are answered at once, not slept on
    refused = guesser.sign_in("alice", "wonderland")
    assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1  # even the right one, now
    real = Attacker(site["url"], address="198.51.100.11")
    assert real.sign_in("alice", "wonderland").json()["ok"]  # her own address is not slowed down
    guesser.close()
    real.close()


def test_an_account_under_attack_is_logged(site: dict[str, str]) -> None:
    for n in range(24):
        guesser = Attacker(site["url"], address=f"198.51.100.{100 + n}")
        guesser.sign_in("bob", "hunter2-guess")
        guesser.close()
    for _ in range(50):
        log = Path(site["log"]).read_text()
        if "under attack" in log:
            break
        time.sleep(0.1)
    assert "wrong passwords for account 'bob' in the last minute from 2" in log and "under attack" in log
    assert "hunter2" not in log


# -- 5. limits per client, not per tab --------------------------------------------------------------

def test_fifty_sessions_from_one_address_share_its_rate_limit(site: dict[str, str]) -> None:
    answered = limited = 0
    for _ in range(50):
        client = Attacker(site["url"], address="198.51.100.50", cookies=False)  # a fresh session each time
        text = client.send("coffee", session=client.new_session()).text
        answered += "Score" in text
        limited += "faster than I can take them" in text
        client.close()
    assert 1 <= answered <= 11 and limited >= 1, (answered, limited)
    other = Attacker(site["url"], address="198.51.100.51")
    assert "Score" in other.send("coffee").text  # another address is not held up
    other.close()


# -- 6. uploads ---------------------------------------------------------------------------------------

def folder_size(folder: str) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file())


def test_anonymous_uploads_are_capped_in_size_and_per_hour(site: dict[str, str]) -> None:
    client = Attacker(site["url"], address="198.51.100.60")
    before = folder_size(site["uploads"])
    big = client.upload("big.jpg", b"\xff\xd8\xff" + bytes(MAX_MB * 1024 * 1024 + 200_000))
    assert big.status_code == 413 and folder_size(site["uploads"]) == before
    statuses = [client.upload(f"part{n}.jpg", b"\xff\xd8\xff" + bytes(1024 * 1024)).status_code for n in range(8)]
    assert statuses[:4] == [200] * 4 and 429 in statuses, statuses
    assert folder_size(site["uploads"]) - before <= QUOTA_MB * 1024 * 1024
    client.close()


def test_a_refused_upload_is_deleted_at_once(site: dict[str, str], attacker: Attacker) -> None:
    [path] = attacker.upload("bomb.png", pixel_bomb()).json()
    for _ in range(50):
        if Path(path).is_file():
            break
        time.sleep(0.1)
    answer = attacker.send("", [file_data(path)])
    assert "10000x10000" in answer.text
    assert not Path(path).exists()


def test_a_guests_refused_gallery_upload_is_deleted_at_once(site: dict[str, str], attacker: Attacker,
                                                             photos: dict[str, Path]) -> None:
    [path] = attacker.upload("mine.jpg", recompressed(photos["coffee"])).json()
    for _ in range(50):
        if Path(path).is_file():
            break
        time.sleep(0.1)
    answer = attacker.call("clipbot-add-button", "click", [None, [file_data(path)], "x", "", "", "any colour", ""])
    assert "Sign in to add" in answer.text and not Path(path).exists()


# -- 7. the smaller findings ----------------------------------------------------------------------------

@pytest.mark.parametrize("route", [
    "/monitoring", "/monitoring/summary", "/gradio_api/monitoring", "/openapi.json", "/gradio_api/openapi.json",
    "/docs", "/redoc", "/config", "/gradio_api/info", "/gradio_api/api_info", "/login", "/gradio_api/mcp/sse",
    "/gradio_api/proxy=http://127.0.0.1/", "/gradio_api/runs", "/gradio_api/vibe-code", "/manifest.json",
])
def test_routes_the_page_does_not_use_are_not_served(attacker: Attacker, route: str) -> None:
    assert attacker.get(route).status_code == 404


def test_the_rest_api_is_not_served(attacker: Attacker) -> None:
    for route in ("/gradio_api/run/predict", "/gradio_api/call/send", "/gradio_api/api/predict"):
        assert attacker.post(route, json={"data": ["coffee"]}).status_code == 404


def test_the_page_cannot_be_framed_and_loads_nothing_from_elsewhere(attacker: Attacker) -> None:
    page = attacker.get("/")
    assert page.headers["x-frame-options"] == "DENY"
    csp = page.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp and "default-src 'self'" in csp and "http" not in csp
    assert page.headers["x-content-type-options"] == "nosniff"


def test_cors_is_the_pages_own_origin_only(site: dict[str, str], attacker: Attacker) -> None:
    for origin in ("http://localhost:9999", "http://127.0.0.1:1", "null", "http://phish.example"):
        response = attacker.get("/", headers={"origin": origin})
        assert "access-control-allow-origin" not in response.headers
        join = attacker.post("/gradio_api/queue/join", headers={"origin": origin},
                             json={"data": [], "fn_index": 0, "session_hash": "x"})
        assert join.status_code == 403
        assert attacker.post("/auth/sign-in", headers={"origin": origin},
                             json={"name": "alice", "password": "wonderland"}).status_code == 403


def test_an_id_in_another_gallery_answers_as_one_that_does_not_exist(site: dict[str, str]) -> None:
    alice = signed_in(site)  # ids 1-3 are the shared gallery's, 4 the private Telegram image
    answers = {}
    for image_id in (4, 99_999):
        answer = alice.call("clipbot-save", "click", [None, image_id, "x", "", "", "any colour", "", None])
        answers[image_id] = str(answer.data[0]).replace(str(image_id), "N")  # the edit panel's status
        assert_no_secret(answer.raw)
    assert answers[4] == answers[99_999] and "There is no image" in answers[4]
    deleted = {i: str(alice.send(f"/delete {i}").data[0][-1]["content"]).replace(str(i), "N") for i in (4, 99_999)}
    assert deleted[4] == deleted[99_999] and "There is no image #N in this chat." in deleted[4]
    alice.close()
