"""deploy/: what can be checked without docker. The compose file parses, sets only settings clipbot
reads (and they load into working platforms), the image runs a real command and gets every package."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any, cast

import pytest
import setuptools
import yaml
from packaging.requirements import Requirement

from adapters.discord import DiscordPlatform
from adapters.telegram import TelegramPlatform
from bot.cli import build_parser
from bot.composition import build_platforms
from bot.settings import Settings, load_settings
from core.chat.service import ChatService

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).parent.parent
DEPLOY = ROOT / "deploy"
WORKERS = ("worker1", "worker2")
# What a deployer puts in deploy/.env (deploy/env.example lists them).
DEPLOY_ENV = {"POSTGRES_PASSWORD": "pg-password", "DOMAIN": "bot.example.com", "TELEGRAM_BOT_TOKEN": "123:abc",
              "TELEGRAM_WEBHOOK_SECRET": "webhook_secret-1", "DISCORD_BOT_TOKEN": "discord-token"}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return cast(dict[str, Any], yaml.safe_load((DEPLOY / "compose.yaml").read_text()))


def interpolate(value: str, env: dict[str, str]) -> str:
    """Compose's ${VAR}, ${VAR:-default} and ${VAR:?error} substitution."""
    def one(match: re.Match[str]) -> str:
        name, op, arg = match.group(1), match.group(2), match.group(3)
        if env.get(name):
            return env[name]
        if op == ":?":
            raise AssertionError(f"compose would stop: {arg}")
        return arg or ""

    return re.sub(r"\$\{(\w+)(?:(:-|:\?)([^}]*))?\}", one, value)


def env_names() -> set[str]:
    """The environment variable of every setting, as pydantic-settings reads it."""
    names = set()
    for field, info in Settings.model_fields.items():
        alias = info.validation_alias
        names.add(str(alias.choices[0]) if alias is not None else f"CLIPBOT_{field.upper()}")  # type: ignore[union-attr]
    return names


def test_compose_runs_postgres_two_workers_and_a_proxy(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["db"]["image"] == "pgvector/pgvector:pg16"
    assert set(services) == {"db", *WORKERS, "proxy"}
    for name in WORKERS:
        worker = services[name]
        assert (worker["build"]["context"], worker["build"]["dockerfile"]) == ("..", "deploy/Dockerfile")
        assert (DEPLOY / worker["build"]["context"] / worker["build"]["dockerfile"]).is_file()
        assert worker["depends_on"]["db"]["condition"] == "service_healthy"
        assert "ports" not in worker  # only the proxy faces the internet
    # The media volume at the same path in both, the path CLIPBOT_MEDIA_DIR names; data apart.
    mounts = [dict(v.split(":", 1)[::-1] for v in services[name]["volumes"]) for name in WORKERS]
    media_dir = services["worker1"]["environment"]["CLIPBOT_MEDIA_DIR"]
    assert mounts[0][media_dir] == mounts[1][media_dir] == "media"
    data_dir = services["worker1"]["environment"]["CLIPBOT_DATA_DIR"]
    assert mounts[0][data_dir] != mounts[1][data_dir]
    assert set(compose["volumes"]) >= {v for m in mounts for v in m.values()}


def test_every_variable_a_worker_gets_is_a_setting(compose: dict[str, Any]) -> None:
    known = env_names()
    for name in WORKERS:
        unknown = set(compose["services"][name]["environment"]) - known
        assert unknown == set(), f"{name} sets variables clipbot does not read: {sorted(unknown)}"


def test_the_workers_settings_load_into_webhook_and_shard_platforms(compose: dict[str, Any],
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    db_env = compose["services"]["db"]["environment"]
    service = cast(ChatService, object())  # the platforms only keep it until they start
    for shard, name in enumerate(WORKERS):
        environment = {k: interpolate(str(v), DEPLOY_ENV) for k, v in compose["services"][name]["environment"].items()}
        assert environment["CLIPBOT_DATABASE_URL"] == (
            f"postgresql://{db_env['POSTGRES_USER']}:pg-password@db:5432/{db_env['POSTGRES_DB']}")
        for key in env_names():
            monkeypatch.delenv(key, raising=False)
        for key, value in environment.items():
            monkeypatch.setenv(key, value)
        settings = load_settings(None)
        telegram, discord = build_platforms(settings, service)
        assert isinstance(telegram, TelegramPlatform) and telegram.webhook is not None
        assert telegram.webhook.url == "https://bot.example.com/telegram"
        assert (telegram.webhook.listen, telegram.webhook.port) == ("0.0.0.0", 8443)
        assert isinstance(discord, DiscordPlatform) and (discord.shard_count, discord.shard_ids) == (2, (shard,))


def test_the_proxy_sends_the_webhook_path_to_both_workers(compose: dict[str, Any]) -> None:
    caddyfile = (DEPLOY / "Caddyfile").read_text()
    worker_env = compose["services"]["worker1"]["environment"]
    path = interpolate(worker_env["TELEGRAM_WEBHOOK_URL"], DEPLOY_ENV).split("bot.example.com", 1)[1]
    assert f"handle {path} {{" in caddyfile
    port = worker_env["TELEGRAM_WEBHOOK_PORT"]
    assert f"reverse_proxy {' '.join(f'{w}:{port}' for w in WORKERS)} {{" in caddyfile
    assert "./Caddyfile:/etc/caddy/Caddyfile:ro" in compose["services"]["proxy"]["volumes"]


def dockerfile_instruction(name: str) -> list[str]:
    """The last ENTRYPOINT or CMD, in exec (JSON) or shell form, as argv."""
    lines = [line for line in (DEPLOY / "Dockerfile").read_text().splitlines() if line.startswith(f"{name} ")]
    value = lines[-1][len(name):].strip()
    return cast(list[str], json.loads(value)) if value.startswith("[") else shlex.split(value)


def test_the_images_command_is_clipbot_run() -> None:
    argv = dockerfile_instruction("ENTRYPOINT") + dockerfile_instruction("CMD")
    assert argv == ["clipbot", "run"]
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"][argv[0]] == "bot.cli:main"
    assert build_parser().parse_args(argv[1:]).command == "run"
    for line in (DEPLOY / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            *sources, _ = line.split()[1:]
            assert all((ROOT / s).exists() for s in sources), line
    assert "postgres" in pyproject["project"]["optional-dependencies"]  # the extra the image installs


def test_the_image_gets_every_package() -> None:
    """``pip install .`` (the image's) builds a wheel holding only the packages setuptools is told
    about; a development (editable) install hides a missing one."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    config = pyproject["tool"]["setuptools"]
    on_disk = {".".join(p.parent.relative_to(ROOT).parts) for top in ("bot", "core", "adapters")
               for p in (ROOT / top).rglob("__init__.py")}
    if isinstance(config.get("packages"), list):
        packaged = set(config["packages"])  # setuptools adds no subpackages to an explicit list
    else:
        find = config["packages"]["find"]
        packaged = set(setuptools.find_packages(str(ROOT), include=find.get("include", ("*",)),
                                                exclude=find.get("exclude", ())))
    assert sorted(on_disk - packaged) == []


def test_the_image_gets_the_webhook_server() -> None:
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    [ptb] = [Requirement(r) for r in pyproject["project"]["dependencies"] if r.startswith("python-telegram-bot")]
    assert "webhooks" in ptb.extras  # tornado: python-telegram-bot's webhook server
