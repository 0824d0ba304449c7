"""Keeping the gallery's files and database honest: the sweep and the checks behind `clipbot doctor`."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from core.gallery.files import TMP_PREFIX, MediaStore
from core.storage import GalleryStorage

log = logging.getLogger(__name__)
# A file younger than this may belong to a write still in progress: its row is not committed yet.
MIN_AGE_S = 300.0


@dataclass(frozen=True)
class SweepReport:
    """What a sweep found and removed."""

    temporary_removed: int = 0
    orphans_removed: int = 0
    files_kept: int = 0
    problems: list[str] = field(default_factory=list)  # files that could not be removed

    @property
    def removed(self) -> int:
        return self.temporary_removed + self.orphans_removed


async def sweep(store: GalleryStorage, media: MediaStore, *, min_age_s: float = MIN_AGE_S,
                referenced: set[str] | None = None) -> SweepReport:
    """Remove temporary files left by killed writes, and stored pictures no image row uses.

    A temporary file goes at once when the process that wrote it is gone; anything else only
    once older than ``min_age_s``, so a write in progress (here or on another machine sharing
    the folder) is never swept. ``referenced`` saves reading the rows' files again when the
    caller has them.
    """
    if referenced is None:
        referenced = await store.referenced_files()
    report = await asyncio.to_thread(_sweep_files, media.root, referenced, time.time() - min_age_s)
    if report.removed:
        log.warning("sweep of %s: removed %d temporary file(s) and %d unused picture(s)", media.root,
                    report.temporary_removed, report.orphans_removed)
    else:
        log.info("sweep of %s: nothing to remove (%d pictures in use)", media.root, report.files_kept)
    for problem in report.problems:
        log.warning("sweep: %s", problem)
    return report


def _sweep_files(root: Path, referenced: set[str], older_than: float) -> SweepReport:
    temporary = orphans = kept = 0
    problems: list[str] = []
    if not root.is_dir():
        return SweepReport()
    for path in root.rglob("*"):
        try:
            if not path.is_file():
                continue
            relative = path.relative_to(root).as_posix()
            if relative in referenced:
                kept += 1
                continue
            temporary_file = path.name.startswith(TMP_PREFIX)
            dead_writer = temporary_file and not _writer_alive(path.name)
            if not dead_writer and path.stat().st_mtime > older_than:
                continue  # maybe a write whose row is still to come
            path.unlink()
            if temporary_file:
                temporary += 1
            else:
                orphans += 1
        except OSError as exc:
            problems.append(f"cannot remove {path}: {exc.strerror or exc}")
    return SweepReport(temporary, orphans, kept, problems)


def _writer_alive(name: str) -> bool:
    """Whether the process named in a temporary file (``.tmp-<pid>-...``) still runs here."""
    pid_text = name[len(TMP_PREFIX):].split("-", 1)[0]
    if not pid_text.isdigit():
        return True  # no pid to go by: only its age can tell
    try:
        os.kill(int(pid_text), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    return True


@dataclass(frozen=True)
class HealthReport:
    """The database's own integrity check, pictures rows point at but that are gone, and the sweep."""

    integrity: list[str]
    missing_files: list[str]
    sweep: SweepReport

    @property
    def healthy(self) -> bool:
        return self.integrity == ["ok"] and not self.missing_files and not self.sweep.problems


async def check_health(store: GalleryStorage, media: MediaStore, *, min_age_s: float = MIN_AGE_S) -> HealthReport:
    """Everything `clipbot doctor` looks at; the sweep part also repairs what it finds."""
    integrity = await store.integrity_check()
    referenced = await store.referenced_files()
    missing = await asyncio.to_thread(lambda: sorted(f for f in referenced if not media.absolute(f).is_file()))
    return HealthReport(integrity, missing, await sweep(store, media, min_age_s=min_age_s, referenced=referenced))
