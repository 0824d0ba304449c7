"""Content-addressed image files under ``data/media``, written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from core.storage.faults import storage_fault

# Files being written; a kill mid-write leaves one behind, which the sweep removes.
TMP_PREFIX = ".tmp-"


class MediaStore:
    """Stores each distinct file once, named by its sha256."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def relative_path(self, sha256: str, extension: str) -> str:
        # Two-level fan-out keeps directories small for galleries of hundreds of thousands.
        return f"{sha256[:2]}/{sha256}{extension}"

    def absolute(self, relative: str) -> Path:
        return self.root / relative

    def put(self, data: bytes, sha256: str, extension: str) -> str:
        """Write ``data`` unless already present; returns the path relative to the root."""
        relative = self.relative_path(sha256, extension)
        target = self.absolute(relative)
        try:
            if target.exists():
                # Fresh again: a sweep that saw no row using it must not take it before ours commits.
                os.utime(target)
                return relative
            self._write(target, data, extension)
        except OSError as exc:
            fault = storage_fault(exc, target)
            if fault is None:
                raise
            raise fault from exc
        return relative

    @staticmethod
    def _write(target: Path, data: bytes, extension: str) -> None:
        target.parent.mkdir(parents=True, exist_ok=True)
        # The writer's pid in the name lets a sweep tell a killed write from one under way.
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f"{TMP_PREFIX}{os.getpid()}-", suffix=extension)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)  # a reader never sees a half-written file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def delete(self, relative: str) -> None:
        self.absolute(relative).unlink(missing_ok=True)
