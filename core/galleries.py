"""Gallery names: each chat has its own collection, and every chat also searches the shared one."""

from __future__ import annotations

GLOBAL_COLLECTION = "global"
