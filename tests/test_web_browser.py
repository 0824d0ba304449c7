"""The web chat in a real Chromium: ``clipbot web`` on a free port with a tiny model, driven by Playwright.

One server and one browser for the module; each test opens its own page (a new session), saves a
screenshot under the pytest temp dir, and keeps the page's console errors, which the last test
asserts are none. ``CLIPBOT_TEST_WEB_MODEL=bench/.cache/vit-b32-random`` runs them on the real
architecture; upload-to-result times are written beside the screenshots (timings.txt).
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.browser import BROWSER_TESTS, CHROMIUM, clipbot_web, free_port, index_as_operator
from tests.conftest import labelled_folder, recompressed
from tests.test_web import PDF, pixel_bomb

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

pytestmark = BROWSER_TESTS  # playwright is imported inside: without it, these are skipped, not broken
CONSOLE_ERRORS: list[str] = []
SHARED = ("rocket", "coffee", "chelsea", "astronaut")
MAX_MB = 3


def expect(locator: Locator) -> Any:
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(locator)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("web-screenshots")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, clip_dir: Path, photos: dict[str, Path]) -> Iterator[str]:
    """``clipbot web`` over a gallery of four labelled photos, with one user (alice) who is an admin."""
    root = tmp_path_factory.mktemp("web-server")
    env = {
        **os.environ, "CLIPBOT_CLIP_MODEL": os.environ.get("CLIPBOT_TEST_WEB_MODEL") or str(clip_dir),
        "CLIPBOT_DATA_DIR": str(root / "data"), "CLIPBOT_CAPTION_MODEL": "none", "CLIPBOT_PRECISION": "fp32",
        "CLIPBOT_RATE_LIMIT_PER_MINUTE": "0", "CLIPBOT_MAX_IMAGE_MB": str(MAX_MB),
        "CLIPBOT_WEB_USERS": "alice:wonderland", "CLIPBOT_ADMIN_IDS": "web:alice",
        "GRADIO_TEMP_DIR": str(root / "gradio"),
    }
    folder = labelled_folder(root / "photos", {name: photos[name] for name in SHARED})
    index_as_operator(root, env, [str(folder), "--labels-from-folders"])
    with clipbot_web(env, free_port(), root / "web.log") as url:
        yield url


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        # Chromium refuses to run as root inside its sandbox; CI runs as root.
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


@pytest.fixture
def page(server: str, browser: Browser, shots: Path, request: pytest.FixtureRequest) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.goto(server)
    page.get_by_text("The gallery holds").wait_for()
    yield page
    page.screenshot(path=str(shots / f"{request.node.name}.png"), full_page=True)
    CONSOLE_ERRORS.extend(f"{request.node.name}: {e}" for e in errors)
    context.close()


def chat(page: Page) -> Locator:
    return page.locator("#clipbot-chat")


def uploaded(page: Page) -> None:
    """Wait until the file put in the message box is uploaded: its thumbnail (or chip) shows."""
    page.locator("#clipbot-box [aria-label='File thumbnail']").wait_for()


def send(page: Page, text: str = "", file: Path | None = None) -> None:
    if file is not None:
        page.locator("#clipbot-box input[type=file]").set_input_files(str(file))
        uploaded(page)
    box = page.locator("#clipbot-box textarea")
    box.fill(text)
    box.press("Enter")


def answer(page: Page, text: str) -> Locator:
    """The newest bot message containing ``text``, once it is there."""
    found = chat(page).get_by_text(text).last
    found.wait_for()
    return found


def sign_in(page: Page, name: str = "alice", password: str = "wonderland") -> None:
    if not page.locator("#clipbot-name input").is_visible():
        page.locator("#clipbot-signin > button").first.click()  # open the accordion
    page.locator("#clipbot-name input").fill(name)
    page.locator("#clipbot-password input").fill(password)
    page.locator("#clipbot-sign-in").click()


def record_time(shots: Path, what: str, seconds: float) -> None:
    model = Path(os.environ.get("CLIPBOT_TEST_WEB_MODEL") or "tiny random CLIP").name
    with (shots / "timings.txt").open("a") as f:
        f.write(f"{what} ({model}): {seconds:.3f} s\n")


def test_the_page_says_what_it_is(page: Page) -> None:
    assert "clipbot" in page.title()
    intro = page.locator("#clipbot-intro")
    for words in ("Image search for this photo library", "The gallery holds 4 images.", "To start:"):
        assert words in intro.inner_text()
    assert "Browsing as a guest" in page.locator("#clipbot-who").inner_text()


def test_a_photo_gets_its_match_and_score(page: Page, tmp_path: Path, photos: dict[str, Path], shots: Path) -> None:
    upload = tmp_path / "my-cat.jpg"
    upload.write_bytes(recompressed(photos["chelsea"]))
    page.locator("#clipbot-box input[type=file]").set_input_files(str(upload))
    started = time.perf_counter()  # the upload itself, the match, the reply and its picture on screen
    uploaded(page)
    page.locator("#clipbot-box textarea").press("Enter")
    caption = answer(page, "Score: ")
    result = chat(page).locator("img[src*='/gradio_api/file=']").last
    result.wait_for()
    page.wait_for_function("img => img.complete && img.naturalWidth > 0", arg=result.element_handle())
    record_time(shots, "upload to result", time.perf_counter() - started)
    text = caption.inner_text()
    assert text.startswith("chelsea\nScore: ") and float(text.split("Score: ")[1][:4]) > 0.9
    assert "match 1 of 4" in text


def test_words_find_images_and_buttons_page_through_them(page: Page) -> None:
    send(page, "coffee")
    assert "match 1 of 4" in answer(page, "Score: ").inner_text()
    assert "coffee" in chat(page).inner_text()
    page.get_by_role("button", name="Next match (2/4)").click()
    answer(page, "match 2 of 4")
    page.get_by_role("button", name="Top 4").click()
    answer(page, "Top 4 for coffee")
    send(page, "/stats")
    answer(page, "Shared gallery: 4 images.")


def test_bad_files_get_clear_errors_in_the_chat(page: Page, tmp_path: Path) -> None:
    pdf, bomb, huge = tmp_path / "report.pdf", tmp_path / "bomb.png", tmp_path / "huge.jpg"
    pdf.write_bytes(PDF)
    bomb.write_bytes(pixel_bomb())
    huge.write_bytes(b"\xff\xd8\xff" + bytes((MAX_MB + 1) * 1024 * 1024))
    send(page, file=pdf)
    answer(page, "That is a PDF document; send a JPEG, PNG, WebP, GIF, BMP or TIFF image instead.")
    send(page, file=bomb)
    answer(page, "The image is 10000x10000 (100.0 megapixels); the limit is 40 megapixels.")
    # Over CLIPBOT_MAX_IMAGE_MB: Gradio refuses the upload itself, before any byte reaches the server.
    page.locator("#clipbot-box input[type=file]").set_input_files(str(huge))
    page.get_by_text(f"exceed the maximum allowed size of {MAX_MB}.0 Mb").wait_for()


def test_guests_cannot_add_and_signed_in_users_can(page: Page, photos: dict[str, Path]) -> None:
    send(page, "/add flower | a pink flower", photos["flower"])
    answer(page, "Sign in to add images")
    sign_in(page, password="wrong")
    page.locator("#clipbot-who").get_by_text("Wrong name or password.").wait_for()
    sign_in(page)
    page.locator("#clipbot-who").get_by_text("Signed in as alice (admin).").wait_for()
    send(page, "/add flower | a pink flower", photos["flower"])
    answer(page, "Added #")
    send(page, "flower")
    assert answer(page, "Score: ").inner_text().startswith("flower\na pink flower\nScore: ")
    page.locator("#clipbot-intro").get_by_text("The gallery holds 5 images.").wait_for()


def test_the_gallery_browses_adds_edits_and_deletes(page: Page, photos: dict[str, Path]) -> None:
    sign_in(page)
    page.locator("#clipbot-who").get_by_text("Signed in as alice").wait_for()
    page.get_by_role("tab", name="Gallery").click()
    summary = page.locator("#clipbot-summary")
    summary.get_by_text("newest first").wait_for()
    before = int(summary.inner_text().split()[0])
    thumbnails = page.locator("#clipbot-gallery .thumbnail-item")
    assert thumbnails.count() == before and " rocket · " in page.locator("#clipbot-gallery").inner_text()

    page.locator("#clipbot-files input[type=file]").set_input_files([str(photos["china"]), str(photos["hubble"])])
    expect(page.locator("#clipbot-files")).to_contain_text(photos["hubble"].stem)  # both uploaded
    page.locator("#clipbot-add-label input").fill("trip")
    page.locator("#clipbot-add-description textarea").fill("summer holiday")
    page.locator("#clipbot-add-button").click()
    page.locator("#clipbot-add-status").get_by_text("Added 2 images.").wait_for()
    summary.get_by_text(f"{before + 2} images, newest first").wait_for()

    page.locator("#clipbot-filter input").fill("holiday")
    page.locator("#clipbot-filter input").press("Enter")
    summary.get_by_text(f"2 images of {before + 2} match.").wait_for()
    assert thumbnails.count() == 2
    thumbnails.first.click()
    label = page.locator("#clipbot-edit-label input")
    page.wait_for_function("el => el.value === 'trip'", arg=label.element_handle())
    label.fill("lisbon")
    page.locator("#clipbot-save").click()
    page.locator("#clipbot-edit-status").get_by_text("Saved #").wait_for()
    # Visible ones only: in preview mode the thumbnail strip keeps a hidden copy of each caption,
    # and when that copy came first in the page, waiting for it to show timed out (once in ~20 runs).
    page.locator("#clipbot-gallery").get_by_text("lisbon").filter(visible=True).first.wait_for()
    page.locator("#clipbot-delete").click()
    page.locator("#clipbot-edit-status").get_by_text("Deleted #").wait_for()
    summary.get_by_text(f"1 image of {before + 1} match.").wait_for()


def shown_id(text: str) -> int:
    """The ``#id`` in a result's caption."""
    return int(text.split(" \u00b7 #")[1].split(" ")[0])


def test_not_this_under_a_result_shows_another_image(page: Page) -> None:
    send(page, "coffee")
    first = answer(page, "Score: ").inner_text()  # earlier tests may have added images: "match 1 of" 4 or more
    pictures = chat(page).locator("img[src*='/gradio_api/file=']")
    expect(pictures).to_have_count(1)
    page.get_by_role("button", name="Not this").last.click()
    second = answer(page, "the next best:").inner_text()
    assert second.startswith(f"Not #{shown_id(first)}; the next best:\n")
    assert shown_id(second) != shown_id(first) and "match 1 of " in second
    expect(pictures).to_have_count(2)
    assert pictures.nth(0).get_attribute("src") != pictures.nth(1).get_attribute("src")
    send(page, "> on a table")  # a reply to the last result: refined, never the image it started from
    refined = answer(page, f"#{shown_id(second)}, on a table:").inner_text()
    assert shown_id(refined) != shown_id(second)


# Markup in a label, as a signed-in user or an indexed folder could write it.
EVIL_LABEL = ('<img src="http://198.51.100.7/t.png"><div style="position:fixed;inset:0">overlay</div>'
              '<a href="http://phish.example/">pay</a><form><input type="password"></form>')
INJECTED = """() => {
  const outside = el => !el.closest('#clipbot-signin');
  return [
    ...document.querySelectorAll('form, a[href*="phish"], img[src*="198.51.100"], [style*="inset"]'),
    ...[...document.querySelectorAll('input[type=password]')].filter(outside),
  ].map(el => el.outerHTML.slice(0, 120));
}"""


def test_labels_are_shown_as_text_never_as_markup(page: Page, photos: dict[str, Path], tmp_path: Path) -> None:
    sign_in(page)
    page.locator("#clipbot-who").get_by_text("Signed in as alice").wait_for()
    upload = tmp_path / "new.jpg"  # bytes no other test added
    upload.write_bytes(recompressed(photos["coffee"], scale=0.45, quality=60))
    send(page, f"/add {EVIL_LABEL} | [click](http://phish.example) **bold** www.phish.example", upload)
    answer(page, "Added #")
    send(page, "overlay")
    shown = answer(page, "Score: ").inner_text()
    assert shown.startswith(EVIL_LABEL) and "[click](http://phish.example) **bold**" in shown
    page.get_by_role("tab", name="Gallery").click()
    page.locator("#clipbot-filter input").fill("overlay")
    page.locator("#clipbot-filter input").press("Enter")
    page.locator("#clipbot-summary").get_by_text("match.").wait_for()
    page.locator("#clipbot-gallery .thumbnail-item").first.click()
    page.locator("#clipbot-selected").get_by_text("added by web:alice").wait_for()
    assert page.locator("#clipbot-edit-label input").input_value() == EVIL_LABEL
    assert page.evaluate(INJECTED) == []  # no element, attribute or link came from the label
    links = page.locator("a[href]").evaluate_all("els => els.map(e => e.href)")
    assert not [href for href in links if "phish" in href]


def test_the_pages_had_no_console_errors(page: Page) -> None:
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    send(page, "rocket")
    answer(page, "Score: ")
    page.get_by_role("tab", name="Gallery").click()
    page.locator("#clipbot-summary").get_by_text("newest first").wait_for()
    page.reload()
    page.get_by_text("The gallery holds").wait_for()
    assert errors == [] and CONSOLE_ERRORS == []
