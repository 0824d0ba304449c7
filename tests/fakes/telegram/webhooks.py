"""The fake Bot API's update delivery: ``getUpdates`` long polling, and webhooks.

Webhooks (``setWebhook``, ``deleteWebhook``, ``getWebhookInfo``), after tdlib/telegram-bot-api:
``getUpdates`` while a webhook is set → 409 ``Conflict: can't use getUpdates method while webhook
is active; use deleteWebhook to delete the webhook first`` (a long poll under way when one is set
ends with 409 ``Conflict: terminated by setWebhook request``). ``setWebhook`` with a URL: at most
one a second per bot, else 429 ``Too Many Requests: retry after 1`` (even when nothing changes);
the same settings again → true, "Webhook is already set"; ``secret_token`` over 256 characters →
400 ``Bad Request: secret token is too long``, a character outside A-Z a-z 0-9 _ - → 400
``Bad Request: secret token contains unallowed characters``; a URL without a host → 400
``Bad Request: invalid webhook URL specified``. Like Telegram's cloud servers (the default) it
wants https on port 80, 88, 443 or 8443 at a public address (400 ``Bad Request: bad webhook:
...``, in the server's words); ``local_mode=True`` is a self-hosted Bot API server started with
``--local``, which takes http, any port and local addresses: how the tests can point a webhook
at a listener on 127.0.0.1 honestly. (Host names other than localhost are not resolved.)
While a webhook is set, updates from ``push`` are POSTed to it in order, as Telegram sends them
(``Content-Type: application/json``, the secret in ``X-Telegram-Bot-Api-Secret-Token``); an
answer outside 2xx, or no connection, keeps the update pending and is tried again after
``webhook_retry_interval`` seconds, with ``getWebhookInfo``'s ``last_error_message`` saying why.
``deliveries`` records each attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import re
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp import web

from tests.fakes.telegram.rules import Refusal

WEBHOOK_PORTS = (80, 88, 443, 8443)  # the only ports Telegram's cloud servers deliver to
SECRET_TOKEN_LIMIT = 256
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")


@dataclass
class Delivery:
    """One POST of an update to the webhook: the HTTP status answered (0: no connection)."""

    update_id: int
    url: str
    status: int


class UpdateDelivery:
    """How ``FakeTelegram`` hands out the updates a test pushes (mixed into ``FakeTelegram``)."""

    webhook: dict[str, Any] | None
    webhook_retry_interval: float
    local_mode: bool
    deliveries: list[Delivery]
    last_error: tuple[int, str] | None
    _updates: list[dict[str, Any]]
    _new_update: asyncio.Event
    _next_set_webhook: float
    _delivering: asyncio.Task[None] | None
    _client: aiohttp.ClientSession | None

    async def _m_getUpdates(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        if self.webhook is not None:
            raise Refusal("Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to "
                          "delete the webhook first", 409)
        offset = int(params.get("offset") or 0)
        self._updates = [u for u in self._updates if u["update_id"] >= offset]
        if not self._updates:
            self._new_update.clear()
            # A short long-poll, so the client neither spins nor waits long.
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._new_update.wait(), min(float(params.get("timeout") or 0), 0.5))
        if self.webhook is not None:  # set while this poll waited
            raise Refusal("Conflict: terminated by setWebhook request", 409)
        return [u for u in self._updates if u["update_id"] >= offset]

    # -- webhooks -------------------------------------------------------------------------------

    @staticmethod
    def _answer(result: Any, description: str) -> web.Response:
        return web.json_response({"ok": True, "result": result, "description": description})

    def _check_webhook_url(self, url: str) -> None:
        parts = urlsplit(url if "://" in url else f"https://{url}")  # tdlib defaults to https
        try:
            port = parts.port or (80 if parts.scheme == "http" else 443)
        except ValueError:
            port = 0
        if parts.scheme not in ("http", "https") or not parts.hostname or not port:
            raise Refusal("Bad Request: invalid webhook URL specified")
        if self.local_mode:
            return
        if parts.scheme != "https":
            raise Refusal("Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        if port not in WEBHOOK_PORTS:
            raise Refusal("Bad Request: bad webhook: Webhook can be set up only on ports 80, 88, 443 or 8443")
        host = "127.0.0.1" if parts.hostname == "localhost" else parts.hostname
        with contextlib.suppress(ValueError):
            address = ipaddress.ip_address(host)
            if address.version == 6:
                raise Refusal("Bad Request: bad webhook: IPv6-only addresses are not allowed")
            if not address.is_global:
                raise Refusal(f"Bad Request: bad webhook: IP address {address} is reserved")

    async def _m_setWebhook(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        url = str(params.get("url") or "")
        if not url:  # an empty URL deletes the webhook
            return await self._m_deleteWebhook(params, files)
        now = time.monotonic()
        if now < self._next_set_webhook:
            raise Refusal("Too Many Requests: retry after 1", 429, {"retry_after": 1})
        self._next_set_webhook = now + 1
        drop = params.get("drop_pending_updates") in (True, "true", "True")
        hook = {"url": url, "secret_token": str(params.get("secret_token") or ""),
                "max_connections": int(params.get("max_connections") or 40),
                "allowed_updates": params.get("allowed_updates")}
        current = self.webhook
        if current is not None and not drop and all(current[k] == hook[k] for k in ("url", "secret_token",
                                                                                    "max_connections")):
            current["allowed_updates"] = hook["allowed_updates"]
            return self._answer(True, "Webhook is already set")
        self._check_webhook_url(url)
        if len(hook["secret_token"]) > SECRET_TOKEN_LIMIT:
            raise Refusal("Bad Request: secret token is too long")
        if not _BASE64URL.fullmatch(hook["secret_token"]):
            raise Refusal("Bad Request: secret token contains unallowed characters")
        if drop:
            self._updates.clear()
        self.webhook, self.last_error = hook, None
        self._new_update.set()  # a long poll under way ends (with 409)
        self._deliver_soon()
        return self._answer(True, "Webhook was set")

    async def _m_deleteWebhook(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        if params.get("drop_pending_updates") in (True, "true", "True"):
            self._updates.clear()
        was_set, self.webhook, self.last_error = self.webhook is not None, None, None
        return self._answer(True, "Webhook was deleted" if was_set else "Webhook is already deleted")

    async def _m_getWebhookInfo(self, params: dict[str, Any], files: dict[str, bytes]) -> Any:
        info: dict[str, Any] = {"url": self.webhook["url"] if self.webhook else "", "has_custom_certificate": False,
                                "pending_update_count": len(self._updates)}
        if self.last_error is not None:
            info["last_error_date"], info["last_error_message"] = self.last_error
        if self.webhook is not None:
            info["max_connections"] = self.webhook["max_connections"]
            if self.webhook["allowed_updates"] is not None:
                info["allowed_updates"] = self.webhook["allowed_updates"]
        return info

    def _deliver_soon(self) -> None:
        if self.webhook is not None and self._updates and (self._delivering is None or self._delivering.done()):
            self._delivering = asyncio.get_running_loop().create_task(self._deliver())

    async def _deliver(self) -> None:
        """POST pending updates to the webhook, oldest first, one at a time, until none are left."""
        while self.webhook is not None and self._updates and self._client is not None:
            hook, update = self.webhook, self._updates[0]
            headers = {"Content-Type": "application/json"}
            if hook["secret_token"]:
                headers["X-Telegram-Bot-Api-Secret-Token"] = hook["secret_token"]
            try:
                async with self._client.post(hook["url"], data=json.dumps(update), headers=headers) as response:
                    status, error = response.status, f"Wrong response from the webhook: {response.status} " \
                                                      f"{response.reason}"
            except (aiohttp.ClientError, asyncio.TimeoutError, OSError) as exc:
                status, error = 0, f"Connection failed: {exc}"
            self.deliveries.append(Delivery(update["update_id"], hook["url"], status))
            if 200 <= status <= 299:
                if self._updates and self._updates[0] is update:
                    self._updates.pop(0)
                continue
            self.last_error = (int(time.time()), error)
            await asyncio.sleep(self.webhook_retry_interval)
