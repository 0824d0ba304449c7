"""Soak: a long mixed run of the real Telegram stack against the fake Bot API, for leaks and throughput.

The bot is built as ``clipbot run`` builds it (``build_chat_engine``, ``build_service`` and
``TelegramPlatform``, its flood limiter included; two shorter runs go without the limiter, with
and without OCR) and talks real HTTP over loopback to the tests' fake Bot API. The load
(bench/soak_load.py) pushes updates into the fake:
photos to match, ``/find``, ``/add`` with a caption, ``/delete`` of added ids, "next" and "top"
button presses taken from the bot's own replies, and bad files (a PDF, a truncated JPEG, an empty
file), spread over many private chats and a few groups. At most ``IN_FLIGHT`` requests wait at
a time, at most one per chat, and each waits for its answer with a timeout, so the run ends by
itself.

The model is the tests' tiny random CLIP in every run: the soak measures the bot (memory,
file descriptors, tasks, throughput), not the model, which ``encode`` and ``e2e`` measure.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import re
import statistics
import tempfile
import threading
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import model_dir
from bench.soak_load import GALLERY, IN_FLIGHT, PRIVATE_CHATS, TOKEN, Soak
from tests.conftest import PHOTO_FILES
from tests.fakes.telegram import FakeTelegram

LONG_RUN = 10_000  # requests of the run with the flood limiter: memory must be flat over its second half
SHORT_RUN = 1000  # requests of each run without it: throughput
WARMUP_FRACTION = 0.10
TRACE_FRAMES = 8  # frames kept per traced allocation (--trace)
SETTLE_S = 1.0  # quiet time before each measurement, so in-flight work and idle connections settle


def _rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def _cpu_by_thread() -> Counter[str]:
    """CPU clock ticks so far of this process's live threads, by name ("clipbot-decode_0" counts as
    "clipbot-decode"): where a request's CPU goes, as the kernel counted it."""
    names = {t.native_id: t.name for t in threading.enumerate()}
    out: Counter[str] = Counter()
    for tid in os.listdir("/proc/self/task"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            # Threads Python did not start (torch's, onnxruntime's) go by their kernel name.
            name = names.get(int(tid)) or Path(f"/proc/self/task/{tid}/comm").read_text().strip()
            fields = Path(f"/proc/self/task/{tid}/stat").read_text().rsplit(")", 1)[1].split()
            out[re.sub(r"[_-]?\d+$", "", name)] += int(fields[11]) + int(fields[12])  # utime, stime
    return out


def _fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def _connections(port: int) -> tuple[int, int]:
    """Open loopback connections between the bot and the fake: (bot-side sockets, fake-side sockets).

    Both ends live in this process. The bot's HTTP pool opens connections under load and closes
    them when idle (httpx: after 5 s), and the fake's server runs one task per connection, so
    these are counted apart from the fds and tasks that a leak would leave.
    """
    ours = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            target = os.readlink(f"/proc/self/fd/{fd}")
            if target.startswith("socket:["):
                ours.add(target[8:-1])
    client = server = 0
    for table in ("/proc/self/net/tcp", "/proc/self/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote, state, inode = fields[1], fields[2], fields[3], fields[9]
                if state != "01" or inode not in ours:  # 01: established
                    continue
                if int(local.rsplit(":", 1)[1], 16) == port:
                    server += 1
                elif int(remote.rsplit(":", 1)[1], 16) == port:
                    client += 1
    return client, server


class _LogCounter(logging.Handler):
    """Counts warnings and errors logged during the run (instead of printing them), keeps a few."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.counts: Counter[str] = Counter()
        self.examples: list[str] = []
        self._warnings = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[record.levelname] += 1
        if record.levelno < logging.ERROR:
            self._warnings += 1
            if self._warnings > 3:  # errors first: a few warnings only
                return
        if len(self.examples) < 8:
            exc = f" [{record.exc_info[0].__name__}: {record.exc_info[1]}]" if record.exc_info and \
                record.exc_info[0] else ""
            self.examples.append(f"{record.levelname} {record.name}: {record.getMessage()}{exc}"[:300])


async def _snapshot(fake: FakeTelegram) -> dict[str, float]:
    """Memory, fds and tasks once the run is quiet; fds and tasks also without the bot-fake connections."""
    await asyncio.sleep(SETTLE_S)
    gc.collect()
    fds, tasks = _fds(), len(asyncio.all_tasks())
    client, server = _connections(fake.port)
    return {"rss_mb": _rss_mb(), "fds": fds, "tasks": tasks, "connections": client,
            "fds_net": fds - client - server, "tasks_net": tasks - server}


async def _run(model: Path, *, requests: int, groups: int, per_group: int, time_limit_s: float,
               rate_limit: bool = True, trace: bool = False, ocr: str = "auto") -> dict[str, Any]:
    from adapters.telegram import TelegramPlatform
    from bot.composition import apply_process_settings, build_chat_engine, build_service
    from bot.settings import Settings

    counter = _LogCounter()
    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers = [counter]
    try:
        with tempfile.TemporaryDirectory() as data:
            settings = Settings(  # type: ignore[call-arg]
                clip_model=str(model), data_dir=Path(data), caption_model="none", rate_limit_per_minute=0, ocr=ocr,
                _env_file=None,
            )
            apply_process_settings(settings)  # as `clipbot run` does first: glibc's arenas, torch's threads
            # Its files on disk, as Telegram keeps them on its servers: not in this process's RSS.
            fake = FakeTelegram(TOKEN, files_dir=Path(data) / "telegram-servers")
            await fake.start()
            engine = build_chat_engine(settings)
            await engine.start()
            for name, description in GALLERY.items():
                await engine.add_image(PHOTO_FILES[name], label=name, description=description)
            service = build_service(settings, engine)
            platform = TelegramPlatform(service, token=TOKEN, base_url=fake.base_url,
                                        base_file_url=fake.base_file_url,
                                        max_file_bytes=int(settings.telegram_max_file_mb * 1024 * 1024),
                                        poll_timeout=1, rate_limit=rate_limit)
            await platform.start()
            soak = Soak(fake, requests=requests, groups=groups, per_group=per_group)
            dispatcher = asyncio.create_task(soak.dispatch())
            soak.deadline = time.monotonic() + time_limit_s
            warmup = max(1, round(requests * WARMUP_FRACTION))
            try:
                await soak.phase(warmup)
                before = await _snapshot(fake)
                measured = len(soak.latencies)
                if trace:  # only what the measured part allocates and keeps is traced
                    tracemalloc.start(TRACE_FRAMES)
                rss = [before["rss_mb"]]
                cpu_before = _cpu_by_thread()
                start = time.perf_counter()
                rest = requests - warmup
                for k in range(10):  # the measured part in tenths, RSS after each: a slope, not two points
                    await soak.phase(rest * (k + 1) // 10 - rest * k // 10)
                    rss.append(_rss_mb())
                    if k == 4:  # halfway: memory once quiet, as at both ends, so growth is not a passing peak
                        paused = time.perf_counter()
                        middle = await _snapshot(fake)
                        start += time.perf_counter() - paused  # the quiet second is no one's request
                seconds = time.perf_counter() - start
                cpu = _cpu_by_thread()
                cpu.subtract(cpu_before)
                after = await _snapshot(fake)
                kept = _kept_allocations() if trace else None
            finally:
                soak.stop()
                await dispatcher
                await platform.stop()
                await engine.close()
                await fake.stop()
            await asyncio.sleep(0.1)
            leftover = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    finally:
        root.handlers = saved
    timed = soak.latencies[measured:]
    latencies = [seconds for _, seconds in timed]
    answered = len(latencies)
    return {
        "requests": requests,
        "measured_requests": requests - warmup,
        "seconds": seconds,
        "rps": answered / seconds if seconds else 0.0,
        "p50_ms": 1000 * statistics.median(latencies) if latencies else float("nan"),
        "p95_ms": 1000 * sorted(latencies)[round(0.95 * (len(latencies) - 1))] if latencies else float("nan"),
        "p50_ms_by_kind": _medians_ms(timed),
        "rss_mb_after_warmup": before["rss_mb"],
        "rss_mb_end": after["rss_mb"],
        # The fake keeps the files it serves on disk (as Telegram keeps them on its servers), so
        # the process's growth is the bot's.
        "rss_growth_mb": after["rss_mb"] - before["rss_mb"],
        "rss_trace_mb": [round(v, 1) for v in rss],
        "rss_growth_second_half_mb": after["rss_mb"] - middle["rss_mb"],
        # CPU ms per answered request over the measured part, by thread (the fake's share is in
        # MainThread: its HTTP handlers run on the bot's event loop).
        "cpu_ms_per_request": {name: round(1000 * ticks / os.sysconf("SC_CLK_TCK") / max(1, len(latencies)), 1)
                               for name, ticks in cpu.most_common() if ticks > 0},
        # Growth without the bot's pooled connections to the fake (each one 2 fds and a server task here).
        "fd_growth": after["fds_net"] - before["fds_net"],
        "task_growth": after["tasks_net"] - before["tasks_net"],
        "fds_after_warmup": before["fds"],
        "fds_end": after["fds"],
        "tasks_after_warmup": before["tasks"],
        "tasks_end": after["tasks"],
        "connections_after_warmup": before["connections"],
        "connections_end": after["connections"],
        "tasks_left_after_stop": len(leftover),
        "unanswered": soak.unanswered + soak.not_sent,
        "not_sent": soak.not_sent,
        "timed_out_examples": soak.timed_out,
        "apologies": soak.apologies,
        "unexpected_answers": soak.unexpected_count,
        "unexpected_examples": soak.unexpected,
        "stray_answers": soak.stray,
        "refused_calls": sum(soak.refused.values()),
        "refused_examples": dict(soak.refused.most_common(8)),
        "kinds": dict(sorted(soak.kinds.items())),
        "sample_answers": dict(sorted(soak.samples.items())),
        "answer_methods": dict(sorted(soak.methods.items())),
        "log_records": dict(counter.counts),
        "log_examples": counter.examples,
        "in_flight": IN_FLIGHT,
        "rate_limiter": rate_limit,
        "chats": {"private": PRIVATE_CHATS, "groups": groups},
        "model": "tiny random CLIP (the bot is measured, not the model)",
        **({"python_growth": kept} if kept is not None else {}),
    }


def _medians_ms(timed: list[tuple[str, float]]) -> dict[str, float]:
    by_kind: dict[str, list[float]] = {}
    for kind, seconds in timed:
        by_kind.setdefault(kind, []).append(seconds)
    return {kind: round(1000 * statistics.median(v), 1) for kind, v in sorted(by_kind.items())}


def _kept_allocations(top: int = 12) -> dict[str, Any]:
    """What the measured part allocated and still holds, by the line of our code that allocated it."""
    snapshot = tracemalloc.take_snapshot()
    tracemalloc.stop()
    stats = snapshot.statistics("traceback")
    total = sum(s.size for s in stats)
    lines = []
    for stat in stats[:top]:
        where = " <- ".join(f"{Path(f.filename).name}:{f.lineno}" for f in list(stat.traceback)[::-1][:TRACE_FRAMES])
        lines.append(f"{stat.size / 2**20:6.2f} MB {stat.count:7d} blocks  {where}")
    return {"mb": round(total / 2**20, 2), "blocks": sum(s.count for s in stats), "top": lines}


def run(*, smoke: bool) -> dict[str, Any]:
    """The soak as ``clipbot run`` serves (its flood limiter on), then two shorter ones without it.

    The Telegram flood limiter (python-telegram-bot's AIORateLimiter) lets at most 30 messages a
    second out, the limit Telegram sets for a bot: that, not the bot, bounds the first run's rate.
    The second run shows what the bot itself can answer; the third the same with reading the
    text of added pictures (OCR, about 0.1 s of CPU each) turned off, the bot of the last round.
    """
    model = model_dir(True)
    n, groups, per_group = (60, 2, 3) if smoke else (LONG_RUN, 8, 10)
    result = asyncio.run(_run(model, requests=n, groups=groups, per_group=per_group,
                              time_limit_s=60 if smoke else 1800))
    short = 30 if smoke else SHORT_RUN
    for key, ocr in (("no_rate_limiter", "auto"), ("no_rate_limiter_without_ocr", "none")):
        free = asyncio.run(_run(model, requests=short, groups=groups, per_group=per_group,
                                time_limit_s=60 if smoke else 600, rate_limit=False, ocr=ocr))
        result[f"rps_{key}"] = free["rps"]
        result[key] = {k: free[k] for k in (
            "requests", "seconds", "rps", "p50_ms", "p95_ms", "p50_ms_by_kind", "cpu_ms_per_request", "rss_growth_mb",
            "rss_trace_mb", "fd_growth", "task_growth", "unanswered", "apologies", "unexpected_answers",
            "unexpected_examples", "stray_answers", "refused_calls", "refused_examples", "log_records",
            "log_examples")}
    return result


def main(argv: list[str] | None = None) -> int:
    """``python -m bench.soak [--requests N] [--no-limiter] [--trace]``: one soak run alone, as JSON."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=2000, help="requests in all, the first 10%% a warm-up")
    parser.add_argument("--no-limiter", action="store_true", help="without the Telegram flood limiter")
    parser.add_argument("--ocr", default="auto", help="CLIPBOT_OCR for the bot (default auto, as `clipbot run`)")
    parser.add_argument("--trace", action="store_true",
                        help="tracemalloc over the measured part: what it allocated and still holds, by line")
    args = parser.parse_args(argv)
    result = asyncio.run(_run(model_dir(True), requests=args.requests, groups=8, per_group=10,
                              time_limit_s=3600, rate_limit=not args.no_limiter, trace=args.trace, ocr=args.ocr))
    print(json.dumps(result, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
