"""Web sign-in: ``CLIPBOT_WEB_USERS=name:password,...``, kept as salted scrypt hashes only.

The settings hash the passwords as they are read (:func:`hash_users`), so the plaintext lives no
longer than parsing; :class:`WebUsers` checks a sign-in against the hashes.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections.abc import Mapping

# scrypt at N=2**14, r=8: 16 MiB and about 50 ms a check, OWASP's minimum for interactive logins.
_N, _R, _P = 2**14, 8, 1
_SALT_BYTES = 16
_PREFIX = "scrypt"
_NAME = re.compile(r"^[A-Za-z0-9_.@-]{1,64}$")


def _digest(password: str, salt: bytes, n: int = _N, r: int = _R, p: int = _P) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)


def hash_password(password: str) -> str:
    """``scrypt$N$r$p$salt$hash`` (hex), a fresh salt each time."""
    salt = secrets.token_bytes(_SALT_BYTES)
    return f"{_PREFIX}${_N}${_R}${_P}${salt.hex()}${_digest(password, salt).hex()}"


def hash_users(text: str) -> str:
    """``name:password,...`` as ``name:scrypt$...,...``; raises ValueError naming what is wrong.

    Names are 1-64 of ``A-Z a-z 0-9 _ . @ -`` (they appear in ``CLIPBOT_ADMIN_IDS`` as ``web:<name>``);
    a password may hold anything but a comma, and must not be empty.
    """
    entries: dict[str, str] = {}
    for part in text.split(","):
        if not part.strip():
            continue
        name, sep, password = part.strip().partition(":")
        if not sep or not password:
            raise ValueError("each entry must be name:password")
        if not _NAME.match(name):
            raise ValueError(f"user name {name!r} must be 1-64 of A-Z a-z 0-9 _ . @ -")
        if name in entries:
            raise ValueError(f"user {name!r} is listed twice")
        entries[name] = hash_password(password)
    return ",".join(f"{name}:{hashed}" for name, hashed in entries.items())


class WebUsers:
    """The configured web users, by name, with their password hashes."""

    def __init__(self, hashed: Mapping[str, str] | None = None) -> None:
        self._hashes = dict(hashed or {})
        # Checked for unknown names too, so the time taken does not tell which names exist.
        self._decoy = hash_password(secrets.token_hex(8)) if self._hashes else ""

    @classmethod
    def from_setting(cls, hashed_text: str | None) -> WebUsers:
        """From :func:`hash_users`' output (the ``CLIPBOT_WEB_USERS`` setting once read)."""
        entries = (part.partition(":") for part in (hashed_text or "").split(",") if part)
        return cls({name: hashed for name, _, hashed in entries})

    def __bool__(self) -> bool:
        return bool(self._hashes)

    def __len__(self) -> int:
        return len(self._hashes)

    @property
    def names(self) -> list[str]:
        return sorted(self._hashes)

    def check(self, name: str, password: str) -> bool:
        """Whether ``password`` is ``name``'s (blocking: about 50 ms of scrypt; run it in a thread)."""
        stored = self._hashes.get(name.strip())
        ok = _verify(password, stored or self._decoy)
        return ok and stored is not None


def _verify(password: str, stored: str) -> bool:
    try:
        prefix, n, r, p, salt, digest = stored.split("$")
        if prefix != _PREFIX:
            return False
        actual = _digest(password, bytes.fromhex(salt), int(n), int(r), int(p))
    except ValueError:
        return False
    return hmac.compare_digest(actual, bytes.fromhex(digest))
