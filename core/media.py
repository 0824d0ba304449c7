"""Content-addressed image files under ``data/media``, written atomically."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


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
        if target.exists():
            return relative
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".tmp-", suffix=extension)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, target)  # a reader never sees a half-written file
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return relative

    def delete(self, relative: str) -> None:
        self.absolute(relative).unlink(missing_ok=True)
