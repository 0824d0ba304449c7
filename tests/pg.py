"""PostgreSQL for the tests: ``CLIPBOT_TEST_DATABASE_URL`` when set, else a private server.

The private server is pgserver's PostgreSQL 16 with pgvector, started in a temp dir once per
session (about 2 s) and reached over a Unix socket. Each test that asks for ``pg_url`` gets a
database of its own, dropped afterwards. Test modules import the fixtures they use (named
``*_fixture`` here, so that test arguments shadow no import):
``from tests.pg import pg_server_url_fixture, pg_url_fixture  # noqa: F401``.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

# pgserver reads platformdirs' runtime dir at import; without one it warns and falls back.
os.environ.setdefault("XDG_RUNTIME_DIR", tempfile.mkdtemp(prefix="clipbot-test-run-"))  # mode 0700

import psycopg
from psycopg import sql

ENV = "CLIPBOT_TEST_DATABASE_URL"
_numbers = itertools.count(1)


def start_server(where: Path) -> Any:
    """A pgserver PostgreSQL in ``where`` (created and initialised when new), running."""
    try:
        import pgserver
    except ImportError:  # pragma: no cover - the test extra installs it
        pytest.skip("PostgreSQL tests need pgserver (pip install 'clipbot[test]') or CLIPBOT_TEST_DATABASE_URL")
    return pgserver.get_server(where, cleanup_mode="stop")


def stop_server(server: Any) -> None:
    """Stop a pgserver PostgreSQL now (its data stays): ``pg_ctl stop -m fast``."""
    from pgserver._commands import pg_ctl

    pg_ctl(["-w", "-m", "fast", "stop"], pgdata=server.pgdata, user=server.system_user)


def restart_server(server: Any) -> None:
    """Start a stopped pgserver PostgreSQL again, same data dir and socket."""
    server.ensure_postgres_running()


def with_database(url: str, name: str) -> str:
    """``url`` pointed at database ``name``: a URL stays a URL (as operators write them), a
    ``key=value`` conninfo stays one."""
    if url.startswith(("postgresql://", "postgres://")):
        return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    return psycopg.conninfo.make_conninfo(url, dbname=name)


def create_database(server_url: str, prefix: str = "clipbot_test") -> str:
    name = f"{prefix}_{os.getpid()}_{next(_numbers)}"
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    return name


def drop_database(server_url: str, name: str) -> None:
    with psycopg.connect(server_url, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="session", name="pg_server_url")
def pg_server_url_fixture() -> Iterator[str]:
    """A URL of a PostgreSQL server with pgvector that tests may create databases on."""
    url = os.environ.get(ENV, "").strip()
    if url:
        yield url
        return
    tmp = Path(tempfile.mkdtemp(prefix="clipbot-test-pg-"))
    server = start_server(tmp / "data")
    try:
        yield str(server.get_uri())
    finally:
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


@pytest.fixture(name="pg_url")
def pg_url_fixture(pg_server_url: str) -> Iterator[str]:
    """A fresh, empty database of its own for this test; dropped afterwards."""
    name = create_database(pg_server_url)
    try:
        yield with_database(pg_server_url, name)
    finally:
        drop_database(pg_server_url, name)
