"""The C allocator's habits that decide whether a bot's memory stays flat for months (glibc).

glibc gives each thread that contends for ``malloc`` an arena of its own, up to eight per core,
and raises its threshold for serving large blocks by ``mmap`` each time such a block is freed, up
to 32 MB: after that, image-sized buffers (a decoded photo, a rendered card: 0.2-3 MB) come from
the heaps, where one long-lived small object above them keeps the whole span from going back to
the system. The bot's decode, inference and reader threads allocate and free such buffers all
day. In the soak (bench/soak.py) the process kept 50-95 MB more after 2000 requests, rising in
every tenth of the run, while the Python objects it held did not grow (tracemalloc).

Two arenas and a fixed 128 KiB mmap threshold (what ``MALLOC_ARENA_MAX=2`` and
``MALLOC_MMAP_THRESHOLD_=131072`` do, set by the process itself so operators need not know
them) brought the growth to 15 MB, flat over the second half, at the same requests per second.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

__all__ = ["MMAP_THRESHOLD", "tune_malloc"]

log = logging.getLogger(__name__)
M_MMAP_THRESHOLD = -3  # glibc's malloc.h
M_ARENA_MAX = -8
MMAP_THRESHOLD = 128 * 1024  # glibc's starting value, kept fixed: large buffers go back when freed


def tune_malloc(arenas: int) -> bool:
    """At most ``arenas`` malloc arenas (0: glibc's default) and large blocks always by ``mmap``.

    False where there is no glibc (musl, macOS) or it refuses. Call it before threads start:
    arenas already made stay.
    """
    if arenas <= 0:
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    done = bool(mallopt(M_ARENA_MAX, arenas)) and bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD))
    if not done:
        log.debug("glibc refused mallopt (arenas %d, mmap threshold %d)", arenas, MMAP_THRESHOLD)
    return done
