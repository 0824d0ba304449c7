"""Gallery names: each chat has its own collection, and every chat also searches the shared one."""

from __future__ import annotations

GLOBAL_COLLECTION = "global"


def searchable(collection: str) -> tuple[str, ...]:
    """What a chat gallery's searches look through: itself and the operator's ``global``."""
    return (collection, GLOBAL_COLLECTION) if collection != GLOBAL_COLLECTION else (GLOBAL_COLLECTION,)
