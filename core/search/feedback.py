"""The vector arithmetic of a conversation: combining words with images, and relevance feedback.

Every vector here is a CLIP embedding; inputs are normalised before they are combined, so a
long caption's vector weighs no more than a short one's, and every result is normalised again
(cosine search only looks at directions). The formulas are the README's, "How refining works".
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def unit(vector: np.ndarray) -> np.ndarray:
    """``vector`` scaled to length 1, as float32 (a zero vector stays zero: it has no direction)."""
    v = np.asarray(vector, dtype=np.float32).reshape(-1)
    norm = float(np.linalg.norm(v))
    return v / norm if norm > 0 else v


def _mean_unit(vectors: Sequence[np.ndarray]) -> np.ndarray | None:
    if not len(vectors):
        return None
    mean: np.ndarray = np.mean([unit(v) for v in vectors], axis=0).astype(np.float32)
    return mean


def combine(*, images: Sequence[np.ndarray] = (), plus: Sequence[np.ndarray] = (),
            minus: Sequence[np.ndarray] = (), weight: float) -> np.ndarray:
    """One query vector from images and words to add and to subtract; ``weight`` is w below.

    With images (a result being refined, ``#12`` in a query), the words steer the images' mean:
    ``normalise((1 - w) * mean(images) + w * (mean(plus) - mean(minus)))``. Words alone:
    ``normalise(mean(plus) - w * mean(minus))``, so ``cat -dog`` is mostly "cat".
    """
    if not 0 < weight < 1:
        raise ValueError(f"the weight must lie between 0 and 1, not {weight}")
    base = _mean_unit(images)
    add, sub = _mean_unit(plus), _mean_unit(minus)
    if base is None and add is None:
        raise ValueError("a query needs an image or words to look for")
    if base is None:
        assert add is not None
        return unit(add - weight * sub if sub is not None else add)
    words = (add if add is not None else 0) - (sub if sub is not None else 0)
    if isinstance(words, int):  # no words at all: the images themselves
        return unit(base)
    return unit((1 - weight) * unit(base) + weight * words)


def rocchio(query: np.ndarray, *, liked: Sequence[np.ndarray] = (), rejected: Sequence[np.ndarray] = (),
            alpha: float = 1.0, beta: float = 0.75, gamma: float = 0.25) -> np.ndarray:
    """Rocchio's relevance feedback: ``normalise(a * q + b * mean(liked) - c * mean(rejected))``.

    ``query`` is the thread's first query, so feedback given twice on one image counts once.
    """
    q = alpha * unit(query)
    good, bad = _mean_unit(liked), _mean_unit(rejected)
    if good is not None:
        q = q + beta * good
    if bad is not None:
        q = q - gamma * bad
    out = unit(q)
    return out if np.any(out) else unit(query)
