"""Serving the page: the Gradio app mounted in a FastAPI app, run by uvicorn as a task of this loop.

``uvicorn.Server.serve()`` runs in the event loop that ``clipbot run`` (or ``clipbot web``) already
runs, beside the chat platforms and on the same engine: Gradio awaits the page's coroutine
handlers on this loop, so the engine's asyncio objects (its micro-batcher, its locks) are only
ever used from their own loop. The socket is bound before the server starts, so a port in use
stops the start with a clear message. Gradio is imported only here, when the web app starts.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import os
import socket
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from adapters.web.files import PictureFiles
from adapters.web.guard import WebGuard
from adapters.web.session import PLATFORM, Access
from adapters.web.sessions import Network, SessionStore
from adapters.web.uploads import UploadLedger
from adapters.web.users import WebUsers
from core.chat import ChatService
from core.errors import ConfigError

if TYPE_CHECKING:
    import uvicorn

log = logging.getLogger(__name__)
DEFAULT_PORT = 7860
START_TIMEOUT_S = 60


@dataclass(frozen=True)
class WebLimits:
    """How long a sign-in lasts, which proxies may name the client, and what a guest may upload."""

    session_hours: float = 12.0
    trusted_proxies: tuple[Network, ...] = ()
    guest_upload_bytes_per_hour: int = 200 * 1024 * 1024


def is_loopback(host: str) -> bool:
    if host.lower() in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def open_warning(host: str, users: WebUsers, open_add: bool) -> str | None:
    """The warning printed when the page is reachable from other machines and nobody signs in."""
    if users or is_loopback(host):
        return None
    can = "search and add images" if open_add else "search the gallery"
    return (f"warning: the web chat listens on {host}, reachable from other machines, and no users are "
            f"configured: anyone who can reach it can {can}. Set CLIPBOT_WEB_USERS=name:password,... "
            "or CLIPBOT_WEB_HOST=127.0.0.1.")


def bind(host: str, port: int) -> socket.socket:
    """A listening socket, or a :class:`ConfigError` naming the address (a port in use, a bad host)."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise ConfigError(f"Cannot serve the web chat on {host}:{port}: {exc.strerror or exc}") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise ConfigError(f"Cannot serve the web chat on {host}:{port}: {exc.strerror or exc} "
                          "(set CLIPBOT_WEB_PORT to another port)") from None
    return sock


def _server_class() -> type[uvicorn.Server]:
    import uvicorn

    class LoopServer(uvicorn.Server):
        """uvicorn in a loop it does not own: the process's signal handlers stay the bot's."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            yield

    return LoopServer


class WebPlatform:
    """The web chat as ``clipbot run`` drives a platform: ``start()``, then ``stop()``."""

    name = PLATFORM

    def __init__(self, service: ChatService, *, host: str = "127.0.0.1", port: int = DEFAULT_PORT,
                 users: WebUsers | None = None, open_add: bool = False, admin_ids: frozenset[str] = frozenset(),
                 add_requires_admin: bool = False, max_file_bytes: int = 100 * 1024 * 1024,
                 stop_timeout: float = 30, limits: WebLimits | None = None) -> None:
        self.service = service
        self.limits = limits or WebLimits()
        self.host, self.port = host, port
        self.users = users or WebUsers()
        self.access = Access(users_configured=bool(self.users), open_add=open_add, admin_ids=admin_ids,
                             add_requires_admin=add_requires_admin)
        self.max_file_bytes = max_file_bytes
        self.stop_timeout = stop_timeout
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self._pictures: PictureFiles | None = None
        self._stop_streams: asyncio.Event | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/"

    def build_app(self, pictures: PictureFiles) -> WebGuard:
        """The page mounted at ``/`` in a FastAPI app, behind the :class:`WebGuard` (imports Gradio)."""
        os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
        import gradio as gr
        from fastapi import FastAPI
        from gradio.utils import get_upload_folder

        from adapters.web.app import CSS, WebApp, build_blocks
        from adapters.web.auth import SignIn
        from adapters.web.chat import WebConversation
        from adapters.web.gallery import GalleryView

        uploads = UploadLedger(get_upload_folder(), guest_bytes_per_hour=self.limits.guest_upload_bytes_per_hour)
        sessions = SessionStore(self.limits.session_hours * 3600)
        app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
        guard = WebGuard(app, sessions=sessions, uploads=uploads, proxies=self.limits.trusted_proxies,
                         max_file_bytes=min(self.max_file_bytes, self.limits.guest_upload_bytes_per_hour))
        SignIn(guard, self.users).add_routes(app)
        web = WebApp(
            conversation=WebConversation(self.service, self.access, pictures, uploads),
            gallery=GalleryView(self.service, self.access, pictures, uploads=uploads, texts=self.service),
            users=self.users, access=self.access, identify=guard.identify, uploads=uploads,
        )
        blocks = build_blocks(web)
        gr.mount_gradio_app(
            app, blocks, path="/", max_file_size=self.max_file_bytes, footer_links=[], run_history=False,
            show_error=False, ssr_mode=False, mcp_server=False, css=CSS, allowed_paths=[str(pictures.root)],
            server_name=self.host, server_port=self.port, enable_monitoring=False,
        )
        # Gradio checks that a file named in a request was uploaded, and that a file a handler returns
        # is one it may serve, only for an app it launched itself; a mounted app must say so. This is
        # the second wall: the handlers accept only this browser's own uploads (UploadLedger.owned).
        blocks.has_launched = True
        # Gradio ends each open page's keep-alive stream when this is set (Blocks.close() does it
        # for launch()); without it, stopping would wait out the graceful timeout for every open tab.
        self._stop_streams = next((route.app.stop_event for route in app.routes  # type: ignore[attr-defined]
                                   if isinstance(getattr(route, "app", None), gr.routes.App)), None)
        return guard

    async def start(self) -> None:
        import uvicorn

        warning = open_warning(self.host, self.users, self.access.open_add)
        if warning:
            print(f"clipbot: {warning}", file=sys.stderr)
        sock = bind(self.host, self.port)
        self.port = sock.getsockname()[1]  # port 0 asks for a free one
        self._pictures = PictureFiles()
        try:
            app = self.build_app(self._pictures)
            config = uvicorn.Config(app, loop="none", lifespan="on", log_level="warning", access_log=False,
                                    timeout_graceful_shutdown=max(1, int(self.stop_timeout)))
            server = self._server = _server_class()(config)
            self._task = asyncio.create_task(self._serve(server, sock), name="web")
            deadline = asyncio.get_running_loop().time() + START_TIMEOUT_S
            while not server.started:
                if self._task.done() or asyncio.get_running_loop().time() > deadline:
                    raise ConfigError(f"The web chat could not start on {self.url} (see the log above).")
                await asyncio.sleep(0.05)
        except BaseException:
            sock.close()
            await self.stop()
            raise
        print(f"Web chat on {self.url}", file=sys.stderr)

    @staticmethod
    async def _serve(server: uvicorn.Server, sock: socket.socket) -> None:
        try:
            await server.serve(sockets=[sock])
        except SystemExit:  # uvicorn's way of saying the app's start-up failed; logged by uvicorn
            log.error("the web chat stopped: its start-up failed")
        finally:
            sock.close()

    async def stop(self) -> None:
        """Stop taking requests, let those under way finish (up to the stop timeout), then close."""
        server, task = self._server, self._task
        self._server = self._task = None
        if server is not None:
            server.should_exit = True
        if self._stop_streams is not None:
            self._stop_streams.set()
        if task is not None:
            try:
                await asyncio.wait_for(asyncio.shield(task), self.stop_timeout + 5)
            except asyncio.TimeoutError:
                if server is not None:
                    server.force_exit = True
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._pictures is not None:
            await asyncio.to_thread(self._pictures.remove)
            self._pictures = None
