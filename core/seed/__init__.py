"""The seed notebook's API, its pickle format and import/export.

The face of the wing: front ends and ``bot/`` import from here, never from a module inside.
"""

from core.seed.files import export_seed, import_seed

__all__ = [
    "export_seed",
    "import_seed",
]
