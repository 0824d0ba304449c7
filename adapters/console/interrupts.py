"""Ctrl+C reaches ``input()`` whichever thread the kernel hands it to.

The kernel delivers a terminal's SIGINT to any thread of the process that does not block it,
and the console has several (the engine's decode and inference pools, SQLite's, torch's). When
a worker gets it, Python's C-level handler notes the signal, but the main thread sleeps on in
readline's ``select()`` waiting for a key: Ctrl+C did nothing until the next key was pressed
(tests/test_console.py caught it once in about 25 runs, and a directed signal does it every time).

:class:`InterruptForwarder` watches the signal wakeup fd while a line is read. A SIGINT that the
main thread has not handled a moment later is sent again to the main thread itself, whose
``select()`` it interrupts; the two deliveries count as one, so the line is cancelled once.
Other signals' wakeup bytes go on to the wakeup fd that was set before, if any.
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import threading
from types import FrameType, TracebackType

__all__ = ["InterruptForwarder"]

GRACE_S = 0.2  # how long the main thread has to handle a SIGINT itself before it is sent again


class InterruptForwarder:
    """While entered (on the main thread), SIGINT raises :class:`KeyboardInterrupt` in the main
    thread even when the kernel delivered it to another thread."""

    def __init__(self) -> None:
        self._handled = 0
        self._main = threading.main_thread().ident
        self._pipe: tuple[int, int] | None = None
        self._stop: tuple[int, int] | None = None
        self._previous_fd = -1
        self._previous_handler: signal.Handlers | object = None
        self._watcher: threading.Thread | None = None

    def _interrupted(self, signum: int, frame: FrameType | None) -> None:
        self._handled += 1
        raise KeyboardInterrupt

    def __enter__(self) -> InterruptForwarder:
        self._previous_handler = signal.signal(signal.SIGINT, self._interrupted)
        self._pipe, self._stop = os.pipe(), os.pipe()
        os.set_blocking(self._pipe[1], False)  # set_wakeup_fd wants it so: a signal must never block
        self._previous_fd = signal.set_wakeup_fd(self._pipe[1], warn_on_full_buffer=False)
        self._watcher = threading.Thread(target=self._watch, name="clipbot-console-interrupts", daemon=True)
        self._watcher.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        signal.set_wakeup_fd(self._previous_fd)
        assert self._pipe is not None and self._stop is not None and self._watcher is not None
        os.write(self._stop[1], b"x")
        self._watcher.join()
        for fd in (*self._pipe, *self._stop):
            os.close(fd)
        if self._previous_handler is not None:
            signal.signal(signal.SIGINT, self._previous_handler)  # type: ignore[arg-type]

    def _watch(self) -> None:
        assert self._pipe is not None and self._stop is not None
        wakeup, stop = self._pipe[0], self._stop[0]
        while True:
            ready, _, _ = select.select([wakeup, stop], [], [])
            if stop in ready:
                return
            data = os.read(wakeup, 512)
            others = bytes(b for b in data if b != signal.SIGINT)
            if others and self._previous_fd >= 0:
                with contextlib.suppress(OSError):  # that fd's owner (an event loop) wants its bytes too
                    os.write(self._previous_fd, others)
            if len(others) < len(data):
                self._forward_if_unhandled()

    def _forward_if_unhandled(self) -> None:
        seen = self._handled
        assert self._stop is not None
        ready, _, _ = select.select([self._stop[0]], [], [], GRACE_S)
        if not ready and self._handled == seen and self._main is not None:
            signal.pthread_kill(self._main, signal.SIGINT)
