"""Helpers for tests that drive the web chat in a real Chromium (Debian's, through Playwright).

Playwright cannot download its own browser here: it launches /usr/bin/chromium (``apt-get install
chromium``; .ci/run does it). Without it, the tests marked ``browser`` are skipped with that reason.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMIUM = os.environ.get("CLIPBOT_TEST_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"
SKIP_REASON = "Chromium not installed: apt-get install chromium"


def chromium_missing() -> bool:
    try:
        import playwright  # noqa: F401
    except ImportError:
        return True
    return not Path(CHROMIUM).is_file()


# For a module of browser tests: marked, and skipped with the reason when there is no Chromium.
BROWSER_TESTS = [pytest.mark.browser, pytest.mark.skipif(chromium_missing(), reason=SKIP_REASON)]


def index_as_operator(root: Path, env: dict[str, str], *runs: list[str]) -> None:
    """``clipbot index`` runs (argument lists) in ``root`` with ``env``'s CLIPBOT_ settings, as an operator would."""
    from bot.cli import main

    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        for name, value in env.items():
            if name.startswith("CLIPBOT_"):
                mp.setenv(name, value)
        for arguments in runs:
            assert main(["index", *arguments]) == 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def clipbot_web(env: dict[str, str], port: int, log: Path, *, timeout_s: float = 90,
                cwd: Path | None = None) -> Iterator[str]:
    """``clipbot web --port PORT`` in a subprocess; yields its URL once the page answers, then SIGTERM."""
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "bot", "web", "--port", str(port)], env=env, cwd=cwd,
                                   stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            if process.poll() is not None:
                raise AssertionError(f"clipbot web exited with {process.returncode}:\n{log.read_text()}")
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise AssertionError(f"clipbot web did not answer in {timeout_s} s:\n{log.read_text()}")
            time.sleep(0.2)
        yield url
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
    assert process.returncode == 0, log.read_text()
