"""A 64-bit perceptual hash (DCT pHash) of a picture: equal for a re-upload of the same picture,
a few bits apart for a re-encoded or resized copy, about 32 bits apart for unrelated pictures.

The picture in grey, shrunk to 32x32; its 2-D DCT; the 8x8 lowest frequencies, each one bit:
above their median or not (as the ``imagehash`` package's ``phash``). CPU work: run it on the
engine's decode threads.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

__all__ = ["hash_distance", "hash_distances", "perceptual_hash"]
SIDE = 32
LOW = 8


def _dct_matrix(n: int) -> np.ndarray:
    """The orthonormal DCT-II matrix: ``m @ x`` is the DCT of the column ``x``."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    m = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2 / n)
    m[0] /= math.sqrt(2)
    return m


_DCT = _dct_matrix(SIDE)[:LOW]  # only the rows of the lowest frequencies are needed


def perceptual_hash(image: Image.Image) -> int:
    """The picture's 64-bit pHash, an int in ``[0, 2**64)``."""
    grey = image.convert("L").resize((SIDE, SIDE), Image.Resampling.LANCZOS, reducing_gap=3.0)
    pixels = np.asarray(grey, dtype=np.float64)
    low = (_DCT @ pixels @ _DCT.T).reshape(-1)
    bits = low > np.median(low)
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def hash_distance(a: int, b: int) -> int:
    """How many of the 64 bits differ."""
    return (a ^ b).bit_count()


def hash_distances(a: int, others: Sequence[int]) -> np.ndarray:
    """:func:`hash_distance` of ``a`` to each of ``others``, as an int array (vectorised)."""
    differ = np.asarray(others, dtype=np.uint64).reshape(-1) ^ np.uint64(a)
    bits = np.unpackbits(differ.view(np.uint8).reshape(-1, 8), axis=1)
    counts: np.ndarray = bits.sum(axis=1, dtype=np.int64)
    return counts
