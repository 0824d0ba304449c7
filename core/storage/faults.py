"""Where disk and database failures enter: mapped to :class:`StorageUnavailableError` and logged once."""

from __future__ import annotations

import errno
import logging
import os
import sqlite3

from core.errors import StorageUnavailableError

log = logging.getLogger(__name__)
# The OS errors that mean "this storage cannot take writes now", not "this input is bad".
_UNAVAILABLE_ERRNOS = frozenset({errno.ENOSPC, errno.EROFS, errno.EIO, errno.EDQUOT})
# SQLite's wording for the same conditions (sqlite3 gives no codes before Python 3.11's sqlite_errorcode).
_UNAVAILABLE_SQLITE = ("database or disk is full", "disk i/o error", "database is locked", "readonly database",
                       "unable to open database file")


def storage_fault(exc: BaseException, where: str | os.PathLike[str]) -> StorageUnavailableError | None:
    """The :class:`StorageUnavailableError` that ``exc`` amounts to, logged for the operator; else None."""
    if isinstance(exc, OSError) and exc.errno in _UNAVAILABLE_ERRNOS:
        reason = os.strerror(exc.errno) if exc.errno is not None else str(exc)
    elif isinstance(exc, sqlite3.Error) and any(text in str(exc).lower() for text in _UNAVAILABLE_SQLITE):
        reason = str(exc)
    else:
        return None
    fault = StorageUnavailableError(str(where), reason)
    log.error("storage unavailable, writes refused: %s", fault.detail)
    return fault
