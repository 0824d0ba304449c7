"""The environment the suite runs in: the caller's, less everything that would change what it checks.

Warning filters, Hugging Face and transformers settings, clipbot's own settings (and the chat
platforms' tokens it reads) and the locale are the tests' to set, in the test process and in
every subprocess a test starts (they inherit ``os.environ``). ``CLIPBOT_DEVICE`` and the
``CLIPBOT_TEST_*`` knobs stay: they choose where and on what the suite runs.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

_DROPPED_NAMES = ("PYTHONWARNINGS", "LANG", "LANGUAGE")
_DROPPED_PREFIXES = ("HF_", "TRANSFORMERS_", "LC_", "TELEGRAM_", "DISCORD_", "CLIPBOT_")
_KEPT_PREFIXES = ("CLIPBOT_DEVICE", "CLIPBOT_TEST_")


def controlled(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` without what the caller may have set to change the suite, plus the suite's own."""
    env = {name: value for name, value in environ.items()
           if name.startswith(_KEPT_PREFIXES)
           or not (name in _DROPPED_NAMES or name.startswith(_DROPPED_PREFIXES))}
    env["LC_ALL"] = "C.UTF-8"
    # Tests never touch the network: with no hub, a hub id must fail at once, not after timeouts.
    env["HF_HUB_OFFLINE"] = "1"
    return env


def control() -> None:
    """Make this process's environment :func:`controlled` (conftest does it before anything else)."""
    env = controlled(os.environ)
    os.environ.clear()
    os.environ.update(env)


control()  # on import: conftest's first import, so no test module sees the caller's variables
