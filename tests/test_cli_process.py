"""``clipbot`` as an operator's shell runs it: a real process, its working directory, pipes, no TTY."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.conftest import PHOTO_FILES


def clipbot_env(clip_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLIPBOT_", "TELEGRAM_", "DISCORD_"))}
    env.update(CLIPBOT_CLIP_MODEL=str(clip_dir), CLIPBOT_CAPTION_MODEL="none", CLIPBOT_PRECISION="fp32",
               PYTHONPATH=str(Path(__file__).parent.parent), **extra)
    return env


def clipbot(*argv: str, cwd: Path, env: dict[str, str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot", *argv], cwd=cwd, env=env, capture_output=True,
                          text=True, timeout=120, **kw)  # type: ignore[call-overload, no-any-return]


def test_data_dir_does_not_follow_the_working_directory(tmp_path: Path, clip_dir: Path) -> None:
    home = tmp_path / "xdg"
    env = clipbot_env(clip_dir, XDG_DATA_HOME=str(home / "data"), XDG_CONFIG_HOME=str(home / "config"))
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    indexed = clipbot("index", str(PHOTO_FILES["rocket"]), cwd=one, env=env)
    assert indexed.returncode == 0, indexed.stderr
    stats = clipbot("stats", cwd=two, env=env)
    user_db = home / "data" / "clipbot" / "clipbot.db"
    assert stats.returncode == 0 and "Images:      1 in 1 collection(s)" in stats.stdout
    assert f"Database:    {user_db} " in stats.stdout and f"Data dir:    {user_db.parent}" in stats.stdout
    assert not (one / "data").exists() and not (two / "data").exists()
    legacy = tmp_path / "legacy"  # a gallery already in ./data keeps working there
    (legacy / "data").mkdir(parents=True)
    (legacy / "data" / "clipbot.db").touch()
    stats = clipbot("stats", cwd=legacy, env=env)
    assert stats.returncode == 0 and f"Database:    {(legacy / 'data' / 'clipbot.db').resolve()}" in stats.stdout


def test_dotenv_in_the_user_config_dir_and_the_working_dir(tmp_path: Path, clip_dir: Path) -> None:
    home = tmp_path / "xdg"
    env = clipbot_env(clip_dir, XDG_DATA_HOME=str(home / "data"), XDG_CONFIG_HOME=str(home / "config"))
    (home / "config" / "clipbot").mkdir(parents=True)
    (home / "config" / "clipbot" / ".env").write_text(f"CLIPBOT_DATA_DIR={tmp_path / 'from-config'}\n")
    stats = clipbot("stats", cwd=tmp_path, env=env)
    assert f"Data dir:    {tmp_path / 'from-config'}" in stats.stdout
    (tmp_path / ".env").write_text(f"CLIPBOT_DATA_DIR={tmp_path / 'from-cwd'}\n")  # the working dir's wins
    stats = clipbot("stats", cwd=tmp_path, env=env)
    assert f"Data dir:    {tmp_path / 'from-cwd'}" in stats.stdout


def test_a_closed_pipe_ends_quietly(tmp_path: Path, clip_dir: Path) -> None:
    env = clipbot_env(clip_dir, CLIPBOT_DATA_DIR=str(tmp_path / "data"))
    for name in ("rocket", "coffee", "chelsea"):
        assert clipbot("index", str(PHOTO_FILES[name]), cwd=tmp_path, env=env).returncode == 0
    # `clipbot list --json | head -1`: the reader is gone before clipbot writes.
    proc = subprocess.Popen([sys.executable, "-m", "bot", "list", "--json"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == ""  # no BrokenPipeError traceback, no "Exception ignored" at exit


def test_run_without_platform_or_terminal_exits_2(tmp_path: Path, clip_dir: Path) -> None:
    env = clipbot_env(clip_dir, CLIPBOT_DATA_DIR=str(tmp_path / "data"))
    done = clipbot("run", cwd=tmp_path, env=env, stdin=subprocess.DEVNULL)
    assert done.returncode == 2 and "TELEGRAM_BOT_TOKEN" in done.stderr and "No terminal" in done.stderr
    assert not (tmp_path / "data").exists()  # it said so before opening anything
