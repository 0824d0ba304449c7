"""Switching Python's cycle collector off while models load (it only costs them time)."""

from __future__ import annotations

import contextlib
import gc
import threading
from collections.abc import Iterator

__all__ = ["gc_paused"]

_gc_lock = threading.Lock()
_gc_pauses = 0
_gc_was_enabled = False


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """Importing transformers and building a model create about a million long-lived objects;
    the cycle collector rescans them again and again while they appear, a quarter of a load's
    CPU time, and finds nothing to free. It is switched off meanwhile and put back as it was;
    overlapping loads (CLIP and BLIP on two threads) put it back when the last one ends."""
    global _gc_pauses, _gc_was_enabled
    with _gc_lock:
        if _gc_pauses == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_pauses += 1
    try:
        yield
    finally:
        with _gc_lock:
            _gc_pauses -= 1
            if _gc_pauses == 0 and _gc_was_enabled:
                gc.enable()
