"""The seed notebook's pickled database: a list of dicts with path, embedding, description, label.

Pickles can run code when loaded, so they are read with an unpickler that admits only plain
containers, scalars and numpy arrays; anything else is refused before it can run.
"""

from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from core.errors import FileMissingError, PickleRefusedError

SEED_KEYS = ("path", "embedding", "description", "label")

# The globals a numpy array or numpy scalar needs to be rebuilt; nothing else is importable.
_ALLOWED_GLOBALS: frozenset[tuple[str, str]] = frozenset(
    {
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "bytearray"),
        ("_codecs", "encode"),  # how protocols 0-2 spell bytes; it only encodes a str
        ("copyreg", "_reconstructor"),
    }
)
# copyreg._reconstructor is only admitted for ndarray (older numpy pickles use it).
_RECONSTRUCTOR_TARGETS = frozenset({np.ndarray})


class _SafeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        # Protocols 0-2 written by Python 2 era code say __builtin__ for builtins.
        if (module.replace("__builtin__", "builtins"), name) not in _ALLOWED_GLOBALS:
            raise PickleRefusedError(
                f"Refused to load the pickle: it references {module}.{name}, and only plain data and numpy "
                "arrays are allowed. Nothing in it was run."
            )
        obj = super().find_class(module, name)
        if (module, name) == ("copyreg", "_reconstructor"):
            return _guarded_reconstructor
        return obj

    def persistent_load(self, pid: Any) -> Any:
        raise PickleRefusedError("Refused to load the pickle: it uses persistent ids. Nothing in it was run.")


def _guarded_reconstructor(cls: Any, base: Any, state: Any) -> Any:
    import copyreg

    if cls not in _RECONSTRUCTOR_TARGETS:
        raise PickleRefusedError("Refused to load the pickle: it rebuilds a non-array object.")
    return copyreg._reconstructor(cls, base, state)  # type: ignore[attr-defined]  # private, so not in typeshed


def safe_loads(data: bytes) -> Any:
    """Unpickle ``data`` admitting only containers, str/int/float/bool/None and numpy arrays."""
    try:
        return _SafeUnpickler(io.BytesIO(data)).load()
    except PickleRefusedError:
        raise
    except Exception as exc:
        raise PickleRefusedError(f"The file is not a readable pickle ({type(exc).__name__}: {exc}).") from None


def read_seed_database(path: str | Path) -> list[dict[str, Any]]:
    """Load and validate a seed pickle: a list of dicts with the seed's four keys."""
    p = Path(path)
    try:
        data = p.read_bytes()
    except OSError:
        raise FileMissingError(f"No such file: {p}") from None
    return validate_entries(safe_loads(data), source=p.name)


def validate_entries(entries: Any, *, source: str = "database") -> list[dict[str, Any]]:
    """Check the seed's shape and return entries with flat float32 ``embedding`` arrays."""
    if not isinstance(entries, list):
        raise PickleRefusedError(f"{source} does not hold a list of entries (found {type(entries).__name__}).")
    out = []
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or "embedding" not in entry:
            raise PickleRefusedError(f"Entry {i} of {source} is not a dict with an 'embedding'.")
        vector = np.asarray(entry["embedding"])
        if vector.dtype.kind not in "fiu" or vector.size == 0 or vector.squeeze().ndim > 1:
            raise PickleRefusedError(f"Entry {i} of {source} has an embedding that is not a vector of numbers.")
        out.append(
            {
                "path": str(entry.get("path") or ""),
                # float32 input passes through unchanged, so vectors round-trip bit for bit.
                "embedding": vector.reshape(-1).astype(np.float32, copy=False),
                "description": str(entry.get("description") or ""),
                "label": str(entry.get("label") or ""),
            }
        )
    return out


def write_seed_database(entries: list[dict[str, Any]], path: str | Path) -> None:
    """Write entries as the seed's pickle, atomically."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    tmp = p.with_name(f".{p.name}.tmp")
    with open(tmp, "wb") as fh:
        pickle.dump([{k: e[k] for k in SEED_KEYS} for e in entries], fh, protocol=pickle.HIGHEST_PROTOCOL)
    tmp.replace(p)
