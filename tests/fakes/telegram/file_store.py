"""The files the fake Bot API serves (what users sent and what the bot sent), by file id."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, MutableMapping
from pathlib import Path


class FileStore(MutableMapping[str, tuple[str, bytes]]):
    """``file_id -> (file_path, bytes)``: in memory, or with ``folder`` in files there.

    Telegram keeps every photo a bot sends on its own servers, so that its file id can be sent
    again. The soak (bench/soak.py) runs the fake in the bot's process: kept in memory, 10,000
    requests' photos were 340 MB of that process's RSS, and the heap they fragmented was hard to
    tell from the bot's. On disk they cost the process nothing.
    """

    def __init__(self, folder: Path | None = None) -> None:
        self.folder = folder
        self._entries: dict[str, tuple[str, bytes | Path]] = {}
        self._by_path: dict[str, str] = {}  # file_path -> file_id: downloads look files up by path
        if folder is not None:
            folder.mkdir(parents=True, exist_ok=True)

    def __getitem__(self, file_id: str) -> tuple[str, bytes]:
        path, data = self._entries[file_id]
        return path, data if isinstance(data, bytes) else data.read_bytes()

    def __setitem__(self, file_id: str, value: tuple[str, bytes]) -> None:
        path, data = value
        if file_id in self._entries:
            del self[file_id]
        held: bytes | Path = data
        if self.folder is not None:
            held = self.folder / hashlib.sha256(file_id.encode()).hexdigest()
            held.write_bytes(data)
        self._entries[file_id] = (path, held)
        self._by_path.setdefault(path, file_id)

    def __delitem__(self, file_id: str) -> None:
        path, held = self._entries.pop(file_id)
        if self._by_path.get(path) == file_id:
            del self._by_path[path]
            for other, (other_path, _) in self._entries.items():  # another id may share the path
                if other_path == path:
                    self._by_path[path] = other
                    break
        if isinstance(held, Path):
            held.unlink(missing_ok=True)

    def __iter__(self) -> Iterator[str]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def at_path(self, path: str) -> bytes | None:
        """The bytes served at ``/file/bot<token>/<path>``, or None when no file has that path."""
        file_id = self._by_path.get(path)
        return None if file_id is None else self[file_id][1]
