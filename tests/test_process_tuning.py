"""Process-wide tuning: glibc's malloc arenas and mmap threshold, the settings that apply them, and
the OCR reader's thread running at a lower CPU priority than the chats'."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
from PIL import Image

import bot.composition
from bot.composition import apply_process_settings
from bot.settings import Settings
from core.gallery.engine import Engine
from core.gallery.engine_text import READER_NICENESS, EngineText, picture_text, yield_to_chats
from core.models.ocr import TextLine

ROOT = Path(__file__).resolve().parents[1]
glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread niceness is Linux's")


def child_env() -> dict[str, str]:
    """This environment less what would change the allocator or the settings of the child."""
    dropped_prefixes = ("MALLOC_", "HF_", "TRANSFORMERS_", "CLIPBOT_")
    return {name: value for name, value in os.environ.items()
            if name not in ("PYTHONWARNINGS", "GLIBC_TUNABLES") and not name.startswith(dropped_prefixes)}


def run_python(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``code`` in a fresh interpreter, so the allocator of this test process is untouched."""
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], cwd=ROOT, env=child_env(),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc


# Eight threads alive at once each take an arena of their own unless capped; glibc's malloc_stats
# prints one "Arena N:" block per arena, on stderr.
ARENAS_SCRIPT = """
    import ctypes, sys, threading
    from bot.allocator import tune_malloc

    if sys.argv[1] != "untouched":
        print(tune_malloc(int(sys.argv[1])))
    barrier = threading.Barrier(8)
    kept = []

    def work():
        kept.append(bytearray(200_000))  # a malloc on this thread: it is given an arena
        barrier.wait()

    threads = [threading.Thread(target=work) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ctypes.CDLL("libc.so.6").malloc_stats()
"""


def arenas_after_eight_threads(arenas: str) -> tuple[str, int]:
    proc = run_python(ARENAS_SCRIPT, arenas)
    return proc.stdout.strip(), sum(line.startswith("Arena ") for line in proc.stderr.splitlines())


@glibc_only
@pytest.mark.parametrize("arenas", [1, 2, 4])
def test_tune_malloc_caps_the_arenas_threads_get(arenas: int) -> None:
    returned, count = arenas_after_eight_threads(str(arenas))
    assert returned == "True"
    assert count == arenas


@glibc_only
def test_tune_malloc_zero_returns_false_and_leaves_glibcs_default() -> None:
    returned, count = arenas_after_eight_threads("0")
    _, untouched = arenas_after_eight_threads("untouched")
    assert returned == "False"
    assert count == untouched > 2  # an arena per thread, as if it had not been called


def test_tune_malloc_zero_or_less_never_loads_libc() -> None:
    proc = run_python("""
        import ctypes
        from bot.allocator import tune_malloc

        loaded = []
        ctypes.CDLL = lambda *a, **kw: loaded.append(a)
        print(tune_malloc(0), tune_malloc(-1), loaded)
    """)
    assert proc.stdout.split() == ["False", "False", "[]"]


# Image-sized buffers allocated and freed on eight threads, with small long-lived blocks (over
# pymalloc's 512 bytes, so from malloc's heaps too) kept between them: glibc's default raises its
# mmap threshold after the first free and the kept blocks then pin the freed spans (45-80 MB grew
# here untuned); with the tuning only what is kept (1600 x 2000 bytes = 3.2 MB) stays.
RSS_SCRIPT = """
    import gc, threading
    from bot.allocator import tune_malloc

    def rss_kb():
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        raise RuntimeError("no VmRSS")

    tuned = tune_malloc(2)
    kept = []

    def work(seed):
        held = []
        for i in range(200):
            buffer = bytearray(1_000_000 + (i * 7919 + seed * 104729) % 200_000)
            buffer[::4096] = b"x" * len(buffer[::4096])  # touched, as a decoded photo is
            held.append(buffer)
            kept.append(bytearray(2000))
            if len(held) > 4:
                held.pop(0)

    gc.collect()
    start = rss_kb()
    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    gc.collect()
    print(tuned, len(kept), rss_kb() - start)
"""


@glibc_only
@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="VmRSS is read from /proc")
def test_after_tune_malloc_freed_image_buffers_go_back_to_the_system() -> None:
    tuned, kept, grown_kb = run_python(RSS_SCRIPT).stdout.split()
    assert (tuned, kept) == ("True", "1600")
    assert int(grown_kb) < 24 * 1024, f"the process grew {int(grown_kb) / 1024:.1f} MB"


# apply_process_settings


@pytest.mark.parametrize("arenas", [0, 2])
def test_apply_process_settings_tunes_malloc_with_the_settings_arenas(
    arenas: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    calls: list[int] = []

    def recorder(value: int) -> bool:
        calls.append(value)
        return value > 0

    monkeypatch.setattr(bot.composition, "tune_malloc", recorder)
    settings = Settings(malloc_arenas=arenas, torch_threads=0, data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    apply_process_settings(settings)
    assert calls == [settings.malloc_arenas] == [arenas]


def test_the_default_settings_cap_malloc_at_two_arenas(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []

    def recorder(value: int) -> bool:
        calls.append(value)
        return True

    monkeypatch.setattr(bot.composition, "tune_malloc", recorder)
    apply_process_settings(Settings(data_dir=tmp_path, _env_file=None))  # type: ignore[call-arg]
    assert calls == [2]


# the reader's thread


def niceness() -> int:
    """The calling thread's own niceness (Linux keeps one per thread)."""
    return os.getpriority(os.PRIO_PROCESS, threading.get_native_id())


def in_thread(target: Callable[[], None]) -> None:
    thread = threading.Thread(target=target)
    thread.start()
    thread.join(10)
    assert not thread.is_alive()


@linux_only
def test_yield_to_chats_lowers_only_the_calling_threads_priority() -> None:
    main_before = niceness()
    seen: dict[str, int] = {}

    def reader() -> None:
        seen["before"] = niceness()
        yield_to_chats()
        seen["after"] = niceness()

    in_thread(reader)
    assert seen["after"] >= READER_NICENESS == 10
    assert seen["after"] == max(seen["before"], READER_NICENESS)
    assert niceness() == main_before


@linux_only
def test_threads_started_by_the_yielding_thread_inherit_its_priority() -> None:
    main_before = niceness()
    seen: dict[str, int] = {}

    def child() -> None:
        seen["child"] = niceness()

    def reader() -> None:
        yield_to_chats()
        seen["reader"] = niceness()
        in_thread(child)  # as onnxruntime's threads, started when the models load

    in_thread(reader)
    assert seen["child"] == seen["reader"] >= 10
    assert niceness() == main_before


@linux_only
def test_yield_to_chats_never_raises_a_thread_already_lower() -> None:
    seen: dict[str, int] = {}

    def reader() -> None:
        lower = max(niceness(), 15)
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), lower)
        seen["set"] = lower
        yield_to_chats()
        yield_to_chats()
        seen["after"] = niceness()

    in_thread(reader)
    assert seen["after"] == seen["set"] >= 15


class FakeReader:
    """A text reader that finds no text and notes on which thread, at what niceness, it read."""

    model_id = "fake-ocr"

    def __init__(self) -> None:
        self.reads: list[tuple[str, int, int, tuple[int, int]]] = []

    def read(self, image: Image.Image) -> list[TextLine]:
        self.reads.append((threading.current_thread().name, threading.get_native_id(), niceness(), image.size))
        return []


class TextOnly(EngineText):
    """The engine's text mixin alone, with a reader."""

    def __init__(self, reader: FakeReader) -> None:
        self.fake = reader
        self.reader = reader  # type: ignore[assignment]
        self._reading = set()


@pytest.fixture
def text_only() -> Iterator[TextOnly]:
    yield TextOnly(FakeReader())


def assert_read_on_a_niced_reader_thread(reads: Sequence[tuple[str, int, int, tuple[int, int]]]) -> None:
    assert reads
    names, thread_ids, nicenesses, _ = zip(*reads, strict=True)
    assert all(name.startswith("clipbot-ocr") for name in names)
    assert len(set(thread_ids)) == 1  # one dedicated thread
    assert thread_ids[0] != threading.get_native_id()
    assert all(n >= READER_NICENESS for n in nicenesses)


@linux_only
async def test_the_text_mixin_reads_on_a_niced_thread_of_its_own(text_only: TextOnly) -> None:
    loop_niceness = niceness()
    reader = text_only.fake
    pictures = [Image.new("RGB", (64, 48), "white"), Image.new("RGB", (32, 32), "black")]
    try:
        texts = await text_only.read_text(pictures)
        again = await text_only.read_text(pictures[:1])
    finally:
        await text_only.close_reader()
    assert texts == [picture_text([], "fake-ocr")] * 2 and again == texts[:1]
    assert texts[0].lines == () and texts[0].model_id == "fake-ocr"
    assert [size for *_, size in reader.reads] == [(64, 48), (32, 32), (64, 48)]
    assert_read_on_a_niced_reader_thread(reader.reads)
    assert text_only._reader_pool is None
    assert niceness() == loop_niceness  # the event loop's thread keeps its priority


@linux_only
async def test_the_engines_ocr_reader_thread_runs_niced(engine: Engine) -> None:
    loop_niceness = niceness()
    reader = FakeReader()
    engine.reader = reader  # type: ignore[assignment]
    texts = await engine.read_text([Image.new("RGB", (80, 60), "white")])
    assert texts == [picture_text([], "fake-ocr")]
    assert_read_on_a_niced_reader_thread(reader.reads)
    assert niceness() == loop_niceness


def test_httpcore_knows_its_event_loop_without_a_failed_import_per_request() -> None:
    """httpcore imports sniffio on every request to learn which event loop runs; anyio 4 no longer
    brings it, and each failed import cost 57 us on the loop. The project installs it."""
    import asyncio

    from httpcore._synchronization import current_async_library

    pyproject = (Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8")
    assert '"sniffio' in pyproject

    async def ask() -> tuple[str, bool]:
        before = set(sys.modules)
        name = current_async_library()
        return name, "sniffio" in sys.modules or "sniffio" in before

    assert asyncio.run(ask()) == ("asyncio", True)
