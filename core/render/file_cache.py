"""A small, bounded memory of what was rendered from a stored file (previews, collage tiles).

Chats show the same pictures again and again: a result's preview, then "Next match" back to it,
then "Top N", whose collage tiles are the pictures just previewed; a popular picture is the
best match in many chats. Decoding and scaling it each time was a tenth of the bot's CPU in
the soak (bench/soak.py). Entries are keyed by the file's path *and* its size, mtime and inode,
so a file edited in place or replaced (a gallery indexed where it lies; rsync writes a new file
and renames it over the old, even when it keeps the mtime) is rendered again, never served stale.

The budget is in bytes and the oldest entry goes first, so a gallery of millions of pictures
costs no more memory than one of ten. Safe to use from several threads (the decode pool).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Generic, TypeVar

__all__ = ["FileCache"]

T = TypeVar("T")
_Key = tuple[str, int, int, int, Hashable]


class FileCache(Generic[T]):
    """What ``make`` rendered from a file, at most ``budget_bytes`` of it (``size_of`` measures one)."""

    def __init__(self, budget_bytes: int, size_of: Callable[[T], int]) -> None:
        self.budget_bytes = budget_bytes
        self._size_of = size_of
        self._entries: OrderedDict[_Key, tuple[T, int]] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def held_bytes(self) -> int:
        return self._held

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, path: str | Path, variant: Hashable, make: Callable[[], T | None]) -> T | None:
        """The cached rendering of ``path`` as ``variant``, else ``make()``'s (kept unless None).

        A file that cannot be stat'ed is rendered without caching: ``make`` says what a missing
        file gives.
        """
        try:
            st = os.stat(path)
        except OSError:
            return make()
        key: _Key = (os.fspath(path), st.st_size, st.st_mtime_ns, st.st_ino, variant)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                self.hits += 1
                return entry[0]
            self.misses += 1
        value = make()  # outside the lock: two threads may render the same file once each, never wait
        if value is None:
            return None
        size = self._size_of(value)
        if size > self.budget_bytes:
            return value
        with self._lock:
            old = self._entries.pop(key, None)
            if old is not None:
                self._held -= old[1]
            self._entries[key] = (value, size)
            self._held += size
            while self._held > self.budget_bytes:
                _, (_, dropped) = self._entries.popitem(last=False)
                self._held -= dropped
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._held = 0
