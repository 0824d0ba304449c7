"""Reading the operator's lines: readline editing and history on a terminal, plain lines otherwise."""

from __future__ import annotations

import asyncio
import logging
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Protocol, TextIO

from adapters.console.interrupts import InterruptForwarder

log = logging.getLogger(__name__)
HISTORY_LENGTH = 1000


class LineReader(Protocol):
    async def read(self, prompt: str) -> str | None:
        """The next line, without its line end; ``None`` at end of input.

        Raises :class:`KeyboardInterrupt` when the operator cancelled the line (Ctrl+C).
        """
        ...

    def close(self) -> None: ...


class StreamReader:
    """Lines from a callable such as ``sys.stdin.readline`` (a pipe, a test): no editing, no history."""

    def __init__(self, read_line: Callable[[], str], out: TextIO) -> None:
        self._read_line = read_line
        self._out = out

    async def read(self, prompt: str) -> str | None:
        self._out.write(prompt)
        self._out.flush()
        try:
            line = await asyncio.to_thread(self._read_line)
        except EOFError:
            return None
        return line.rstrip("\r\n") if line else None

    def close(self) -> None:
        pass


def _readline() -> ModuleType | None:
    try:
        import readline
    except ImportError:  # Windows has none: input() still reads lines, without editing or history
        return None
    return readline


def is_terminal() -> bool:
    """Whether the operator sits at a terminal we can read with :class:`TerminalReader`.

    It swaps the SIGINT handler, which only the main thread may do.
    """
    return (sys.stdin is not None and sys.stdin.isatty() and sys.stdout is not None and sys.stdout.isatty()
            and threading.current_thread() is threading.main_thread())


class TerminalReader:
    """``input()`` on the terminal: readline's line editing and history; Ctrl+C cancels the line.

    ``input()`` runs on the event loop's own thread and blocks it until the operator presses
    Enter. It has to: readline only reacts to Ctrl+C in the main thread (in a worker the key
    would wait for Enter), and nothing else needs the loop meanwhile, since the console serves
    one operator and each reply is finished before the next prompt (the engine's own work runs
    in its executor threads). So no loop signal handler may be installed for SIGINT around it.
    """

    def __init__(self, history_file: Path | None) -> None:
        self._history_file = history_file
        self._readline = _readline()
        if self._readline is not None:
            self._readline.clear_history()  # the file is the history, not an earlier chat in this process
            self._readline.set_history_length(HISTORY_LENGTH)
            if history_file is not None:
                try:
                    self._readline.read_history_file(str(history_file))
                except FileNotFoundError:
                    pass
                except OSError as exc:  # a damaged or unreadable file costs the history, not the chat
                    log.warning("could not read the console history %s: %s", history_file, exc)

    async def read(self, prompt: str) -> str | None:
        # asyncio.run's own SIGINT handler cancels the whole chat (the main task) once the line
        # is entered; while reading, Ctrl+C must instead interrupt input() at once, whichever
        # thread the kernel gave it to (adapters/console/interrupts.py).
        try:
            with InterruptForwarder():
                return input(prompt)  # noqa: ASYNC250 -- on the loop's thread on purpose: see the class
        except EOFError:
            return None

    def close(self) -> None:
        if self._readline is None or self._history_file is None:
            return
        try:
            self._history_file.parent.mkdir(parents=True, exist_ok=True)
            self._readline.write_history_file(str(self._history_file))
        except OSError as exc:
            log.warning("could not save the console history to %s: %s", self._history_file, exc)
