"""Files the page uploaded: whose each one is, and how many bytes each guest address sent this hour.

A chat message or an "Add images" press names files by path, and the path comes from the client.
The only paths the handlers open are those this server received through Gradio's upload route
during this run, for the same browser, inside Gradio's upload folder once every link is resolved:
:meth:`UploadLedger.owned` is the one gate. Anything else is refused before it is opened.
Nothing here imports Gradio.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from pathlib import Path

log = logging.getLogger(__name__)
HOUR_S = 3600.0
_MAX_FILES = 100_000  # remembered uploads; the oldest are forgotten (Gradio deletes them within hours)


class UploadLedger:
    """Uploaded paths by owner (see :attr:`adapters.web.sessions.Identity.owner`) and guest byte quotas."""

    def __init__(self, folder: str | Path, *, guest_bytes_per_hour: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.folder = Path(os.path.realpath(folder))
        self.guest_bytes_per_hour = guest_bytes_per_hour
        self._clock = clock
        self._owners: OrderedDict[Path, str] = OrderedDict()
        self._sent: dict[str, deque[tuple[float, int]]] = {}

    # -- quotas -----------------------------------------------------------------------------------

    def retry_after(self, address: str, size: int) -> float | None:
        """None when a guest at ``address`` may upload ``size`` more bytes now, else seconds to wait."""
        if size > self.guest_bytes_per_hour:
            return HOUR_S
        now = self._clock()
        sent = self._window(address, now)
        total = sum(n for _, n in sent)
        if total + size <= self.guest_bytes_per_hour:
            return None
        for when, n in sent:  # wait until enough of this hour's bytes have aged out
            total -= n
            if total + size <= self.guest_bytes_per_hour:
                return max(1.0, when + HOUR_S - now)
        return HOUR_S

    def charge(self, address: str, size: int) -> None:
        self._window(address, self._clock()).append((self._clock(), size))

    def _window(self, address: str, now: float) -> deque[tuple[float, int]]:
        sent = self._sent.setdefault(address, deque())
        while sent and now - sent[0][0] > HOUR_S:
            sent.popleft()
        if len(self._sent) > _MAX_FILES:
            for key in [k for k, q in self._sent.items() if not q]:
                del self._sent[key]
        return sent

    # -- ownership --------------------------------------------------------------------------------

    def record(self, owner: str, paths: Iterable[str]) -> None:
        """The upload route stored ``paths`` for ``owner``."""
        for path in paths:
            resolved = self._inside(path)
            if resolved is not None:
                self._owners[resolved] = owner
                self._owners.move_to_end(resolved)
        while len(self._owners) > _MAX_FILES:
            self._owners.popitem(last=False)

    def owned(self, owner: str, path: str) -> Path | None:
        """The file at ``path`` if ``owner`` uploaded it here, else None (and the attempt is logged)."""
        resolved = self._inside(path)
        if resolved is None or self._owners.get(resolved) != owner or not resolved.is_file():
            log.warning("web: refused a file the client named but did not upload in this session: %r", path[:300])
            return None
        return resolved

    def discard(self, path: Path) -> None:
        """Delete an upload the app refused (a PDF, a pixel bomb...), at once rather than in an hour."""
        self._owners.pop(path, None)
        try:
            path.unlink()
            path.parent.rmdir()  # Gradio keeps each upload in a folder of its own
        except OSError:
            pass

    def _inside(self, path: str) -> Path | None:
        if not isinstance(path, str) or not path or "\x00" in path:
            return None
        resolved = Path(os.path.realpath(path))
        return resolved if resolved.is_relative_to(self.folder) and resolved != self.folder else None
