"""The fake Discord's gateway: a websocket that identifies shards and dispatches events.

* Gateway IDENTIFY with a ``shard`` field ``[id, count]``: anything but two whole numbers with
  ``0 <= id < count`` → close code 4010 "Invalid shard"; a ``count`` below ``required_shards`` (no
  field counts as ``[0, 1]``) → close code 4011 "Sharding required", as Discord closes them.
  Identifies are rate limited per bucket ``id % max_concurrency``: a second one in a bucket within
  ``identify_interval`` (5 s) → opcode 9 Invalid Session (``d: false``), as Discord answers.
  ``GET /gateway/bot`` reports ``recommended_shards`` and ``max_concurrency``. ``dispatch`` sends a
  server's events only to the shard ``(guild_id >> 22) % count`` and DMs only to shard 0.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.discord.payloads import APP_ID, BOT


@dataclass
class Identify:
    """One accepted IDENTIFY: the shard as sent (``(0, 1)`` when unsharded) and the intents."""

    shard: tuple[int, int]
    intents: int | None


class Gateway:
    """The gateway's side of ``FakeDiscord`` (mixed into it): IDENTIFY, heartbeats and DISPATCH."""

    port: int
    identified: asyncio.Event
    identifies: list[Identify]
    gateway_closes: list[int]
    invalid_sessions: int
    required_shards: int
    max_concurrency: int
    identify_interval: float
    _sockets: list[web.WebSocketResponse]
    _seq: itertools.count[int]
    _last_identify: dict[int, float]
    _shard_of: dict[web.WebSocketResponse, tuple[int, int]]

    @property
    def gateway_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/gateway"

    async def dispatch(self, event: str, payload: dict[str, Any]) -> None:
        """Send a gateway DISPATCH to the connected client of the shard it belongs to (a server's
        shard, or shard 0 for DMs), as Discord's gateway does."""
        guild_id = payload.get("guild_id")
        for ws in self._sockets:
            shard_id, count = self._shard_of[ws]
            if shard_id == ((int(guild_id) >> 22) % count if guild_id is not None else 0):
                await ws.send_str(json.dumps({"op": 0, "t": event, "s": next(self._seq), "d": payload}))

    async def _gateway(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        await ws.send_str(json.dumps({"op": 10, "d": {"heartbeat_interval": 41250}}))
        async for msg in ws:
            frame = json.loads(msg.data)
            if frame["op"] == 2:  # IDENTIFY
                await self._identify(ws, frame.get("d") or {})
            elif frame["op"] == 1:  # heartbeat
                await ws.send_str(json.dumps({"op": 11}))
        if ws in self._sockets:
            self._sockets.remove(ws)
        self._shard_of.pop(ws, None)
        return ws

    async def _identify(self, ws: web.WebSocketResponse, data: dict[str, Any]) -> None:
        shard = data.get("shard", [0, 1])
        if not (isinstance(shard, list) and len(shard) == 2 and all(type(n) is int for n in shard)
                and 0 <= shard[0] < shard[1]):
            self.gateway_closes.append(4010)
            await ws.close(code=4010, message=b"Invalid shard")
            return
        shard_id, count = shard
        if count < self.required_shards:
            self.gateway_closes.append(4011)
            await ws.close(code=4011, message=b"Sharding required")
            return
        bucket, now = shard_id % self.max_concurrency, time.monotonic()
        if now - self._last_identify.get(bucket, -math.inf) < self.identify_interval:
            self.invalid_sessions += 1
            await ws.send_str(json.dumps({"op": 9, "d": False}))
            return
        self._last_identify[bucket] = now
        ready = {"v": 10, "user": BOT, "guilds": [], "session_id": f"session-{shard_id}", "private_channels": [],
                 "resume_gateway_url": self.gateway_url, "application": {"id": APP_ID, "flags": 0},
                 **({"shard": shard} if "shard" in data else {})}
        await ws.send_str(json.dumps({"op": 0, "t": "READY", "s": 1, "d": ready}))
        self.identifies.append(Identify((shard_id, count), data.get("intents")))
        self._shard_of[ws] = (shard_id, count)
        self._sockets.append(ws)
        self.identified.set()
