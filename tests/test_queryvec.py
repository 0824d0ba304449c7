"""The vector arithmetic of a conversation (core.search.feedback), on hand-made vectors whose cosines
and rankings can be worked out by hand: the README's formulas in "How refining works" and
"The /find query language"."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pytest

from core.search.feedback import combine, rocchio, unit

E = np.eye(4, dtype=np.float32)  # e0..e3: orthonormal axes


def normalise(v: np.ndarray) -> np.ndarray:
    """The README's normalise(v), computed independently in float64."""
    v64 = np.asarray(v, dtype=np.float64)
    out: np.ndarray = v64 / np.linalg.norm(v64)
    return out


def close(actual: np.ndarray, desired: np.ndarray | list[float]) -> None:
    """Equal to float32 rounding: the README's formula, computed independently."""
    np.testing.assert_allclose(actual, desired, rtol=0, atol=1e-6)


def ranked(query: np.ndarray, candidates: Mapping[str, np.ndarray]) -> list[str]:
    """Candidate names by cosine to ``query``, best first (the candidates are unit vectors)."""
    scores = {name: float(np.dot(normalise(v), query)) for name, v in candidates.items()}
    return sorted(scores, key=lambda name: -scores[name])


def cos(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.dot(normalise(a), normalise(b)))


# -- unit -----------------------------------------------------------------------------------------


def test_unit_scales_to_length_one_as_float32() -> None:
    v = unit(np.array([3.0, 4.0, 0.0]))
    assert v.dtype == np.float32
    close(v, [0.6, 0.8, 0.0])
    assert unit(np.array([[0.0, 2.0]])).shape == (2,)  # flattened
    close(unit(np.array([[0.0, 2.0]])), [0.0, 1.0])


def test_unit_of_zero_stays_zero() -> None:
    v = unit(np.zeros(4))
    assert v.dtype == np.float32
    assert not np.any(v)
    assert np.all(np.isfinite(v))


# -- combine: images only -------------------------------------------------------------------------


def test_images_only_is_their_normalised_mean() -> None:
    close(combine(images=[E[0], E[1]], weight=0.5), normalise(E[0] + E[1]))
    # Inputs are normalised first: a longer vector weighs no more than a shorter one.
    close(combine(images=[5 * E[0], 0.1 * E[1]], weight=0.5), normalise(E[0] + E[1]))
    close(combine(images=[E[0], E[0], E[1]], weight=0.9), normalise(2 * E[0] + E[1]))
    close(combine(images=[2 * E[2]], weight=0.3), E[2])


# -- combine: an image steered by words -----------------------------------------------------------

CANDIDATES = {
    "a": E[0], "b": E[1], "c": normalise(E[0] + E[1]), "d": normalise(3 * E[0] + E[1]),
    "e": normalise(E[0] + 3 * E[1]), "f": E[2],
}


@pytest.mark.parametrize("w", [0.1, 0.25, 0.5, 0.75, 0.9])
def test_image_plus_words_is_the_readme_formula(w: float) -> None:
    i, t = E[0], E[1]
    q = combine(images=[i], plus=[t], weight=w)
    assert q.dtype == np.float32 and q.shape == (4,)
    close(q, normalise((1 - w) * i + w * t))
    assert math.isclose(float(np.linalg.norm(q)), 1.0, abs_tol=1e-6)


def test_image_plus_words_ranks_candidates_by_the_weight() -> None:
    # w = 0.25: q = normalise(0.75 e0 + 0.25 e1) = (3, 1)/sqrt(10); cosines d 1, a .949, c .894,
    # e .6, b .316, f 0.
    assert ranked(combine(images=[E[0]], plus=[E[1]], weight=0.25), CANDIDATES) == ["d", "a", "c", "e", "b", "f"]
    # w = 0.75 mirrors it: the words now weigh three times the image.
    assert ranked(combine(images=[E[0]], plus=[E[1]], weight=0.75), CANDIDATES) == ["e", "b", "c", "d", "a", "f"]
    # The image alone: a first, then d, c, e, b.
    assert ranked(combine(images=[E[0]], weight=0.5), CANDIDATES) == ["a", "d", "c", "e", "b", "f"]


def test_image_with_words_to_add_and_subtract_is_the_readme_formula() -> None:
    rng = np.random.default_rng(12)
    image = rng.standard_normal(16) * 3
    plus = [rng.standard_normal(16) * s for s in (0.5, 2.0)]
    minus = [rng.standard_normal(16) * s for s in (4.0, 0.2, 1.0)]
    for w in (0.2, 0.5, 0.8):
        expected = normalise((1 - w) * normalise(image) + w * (np.mean([normalise(p) for p in plus], axis=0)
                                                               - np.mean([normalise(m) for m in minus], axis=0)))
        got = combine(images=[image], plus=plus, minus=minus, weight=w)
        close(got, expected)


def test_several_images_are_averaged_before_the_words_steer_them() -> None:
    w = 0.4
    got = combine(images=[E[0], 7 * E[1]], plus=[E[2]], weight=w)
    close(got, normalise((1 - w) * normalise(E[0] + E[1]) + w * E[2]))


def test_minus_words_push_the_image_away() -> None:
    # x leans towards the minus vector e1, y is orthogonal to it; from e0 both are at .707.
    x, y = normalise(E[0] + E[1]), normalise(E[0] + E[2])
    before = combine(images=[E[0]], weight=0.5)
    assert cos(before, x) == pytest.approx(cos(before, y), abs=1e-6)
    after = combine(images=[E[0]], minus=[E[1]], weight=0.5)
    close(after, normalise(0.5 * E[0] - 0.5 * E[1]))
    assert cos(after, x) == pytest.approx(0.0, abs=1e-6)
    assert cos(after, y) == pytest.approx(0.5, abs=1e-6)
    assert ranked(after, {"x": x, "y": y}) == ["y", "x"]
    assert cos(after, E[1]) < 0  # the minus direction itself now scores below zero


# -- combine: words alone ---------------------------------------------------------------------------


def test_words_alone_plus_is_their_normalised_mean() -> None:
    # "cat + beach": normalise(mean(cat, beach)); the weight plays no part.
    for w in (0.1, 0.5, 0.9):
        close(combine(plus=[E[0], 3 * E[2]], weight=w), normalise(E[0] + E[2]))
    close(combine(plus=[2 * E[1]], weight=0.5), E[1])


def test_words_alone_minus_is_weighted() -> None:
    # "cat -dog": normalise(cat - w * dog), so the query is mostly "cat".
    close(combine(plus=[E[0]], minus=[E[1]], weight=0.5),
                               np.array([2, -1, 0, 0]) / math.sqrt(5))
    rng = np.random.default_rng(5)
    plus = [rng.standard_normal(8) for _ in range(2)]
    minus = [rng.standard_normal(8) for _ in range(3)]
    for w in (0.25, 0.5, 0.75):
        expected = normalise(np.mean([normalise(p) for p in plus], axis=0)
                             - w * np.mean([normalise(m) for m in minus], axis=0))
        close(combine(plus=plus, minus=minus, weight=w), expected)


def test_words_alone_rank_candidates() -> None:
    # normalise(e0 - 0.5 e1) = (2, -1)/sqrt(5): a .894, d .707, c .316, f 0, e -.141, b -.447
    q = combine(plus=[E[0]], minus=[E[1]], weight=0.5)
    assert ranked(q, CANDIDATES) == ["a", "d", "c", "f", "e", "b"]


# -- combine: what it refuses -----------------------------------------------------------------------


@pytest.mark.parametrize("w", [0.0, 1.0, -0.5, 1.5, float("nan"), float("inf")])
def test_a_weight_outside_zero_one_is_refused(w: float) -> None:
    with pytest.raises(ValueError, match="the weight must lie between 0 and 1"):
        combine(images=[E[0]], plus=[E[1]], weight=w)
    with pytest.raises(ValueError, match="the weight must lie between 0 and 1"):
        combine(plus=[E[1]], weight=w)


@pytest.mark.parametrize("minus", [[], [E[1]]])
def test_nothing_to_look_for_is_refused(minus: list[np.ndarray]) -> None:
    with pytest.raises(ValueError, match="a query needs an image or words to look for"):
        combine(minus=minus, weight=0.5)


# -- rocchio ----------------------------------------------------------------------------------------

Q0 = normalise(np.array([3.0, 2.0, 0.0, 1.0]))
POOL = {
    "A": E[0], "B": E[1], "C": E[2], "D": E[3], "E": normalise(E[0] + E[2]), "F": normalise(E[1] + E[2]),
}


def test_rocchio_is_the_readme_formula() -> None:
    rng = np.random.default_rng(3)
    q0 = rng.standard_normal(16) * 2
    liked = [rng.standard_normal(16) * s for s in (1.0, 0.3)]
    rejected = [rng.standard_normal(16) * s for s in (5.0, 1.0, 0.5)]
    for a, b, c in ((1.0, 0.75, 0.25), (0.8, 0.6, 0.3), (0.5, 1.0, 1.0)):
        expected = normalise(a * normalise(q0) + b * np.mean([normalise(v) for v in liked], axis=0)
                             - c * np.mean([normalise(v) for v in rejected], axis=0))
        got = rocchio(q0, liked=liked, rejected=rejected, alpha=a, beta=b, gamma=c)
        assert got.dtype == np.float32
        close(got, expected)


def test_rocchio_defaults_are_the_readmes() -> None:
    # a, b, c = 1.0, 0.75, 0.25: normalise(e0 + 0.75 e1 - 0.25 e2)
    close(rocchio(E[0], liked=[E[1]], rejected=[E[2]]),
                               normalise(np.array([1.0, 0.75, -0.25, 0.0])))
    close(rocchio(5 * E[0]), E[0])  # no feedback: the query itself


def test_liked_moves_the_query_towards_them() -> None:
    liked = E[2]
    after = rocchio(Q0, liked=[liked])
    assert cos(Q0, liked) == 0.0
    assert cos(after, liked) == pytest.approx(0.75 / math.sqrt(1 + 0.75**2), abs=1e-6)  # .6
    # Before: A .802, E .567, B .535, F .378, D .267, C 0.
    assert ranked(Q0, POOL) == ["A", "E", "B", "F", "D", "C"]
    # After: E .878, F .727, A .641, C .600, B .428, D .214.
    assert ranked(after, POOL) == ["E", "F", "A", "C", "B", "D"]


def test_rejected_moves_the_query_away_from_them() -> None:
    rejected = E[0]
    after = rocchio(Q0, rejected=[rejected])
    assert cos(after, rejected) < cos(Q0, rejected)
    assert cos(Q0, rejected) == pytest.approx(3 / math.sqrt(14), abs=1e-6)  # .802
    assert cos(after, rejected) == pytest.approx(0.678, abs=1e-3)
    # After: A .678, B .657, E .480, F .465, D .329, C 0 (B overtakes E).
    assert ranked(after, POOL) == ["A", "B", "E", "F", "D", "C"]


def test_liked_and_rejected_together() -> None:
    after = rocchio(Q0, liked=[E[2]], rejected=[E[0]])
    # E .832, F .821, C .678, A .499, B .483, D .242.
    assert ranked(after, POOL) == ["E", "F", "C", "A", "B", "D"]
    close(after, normalise(Q0 + 0.75 * E[2] - 0.25 * E[0]))


def test_feedback_counts_from_the_origin() -> None:
    once = rocchio(Q0, liked=[E[2]])
    # The same liked image twice is the same as once: a mean, not a sum.
    np.testing.assert_array_equal(rocchio(Q0, liked=[E[2], E[2]]), once)
    np.testing.assert_array_equal(rocchio(Q0, rejected=[E[0], E[0]]), rocchio(Q0, rejected=[E[0]]))
    # Recomputed from the origin with the same list, nothing compounds...
    np.testing.assert_array_equal(rocchio(Q0, liked=[E[2]]), once)
    # ...whereas feeding the result back in would drift further (why threads keep their origin).
    again = rocchio(once, liked=[E[2]])
    assert cos(again, E[2]) > cos(once, E[2]) + 0.1


@pytest.mark.parametrize(("kwargs", "query"), [
    ({"rejected": [E[0]], "alpha": 0.25, "gamma": 0.25}, E[0]),
    ({"rejected": [3 * E[1]], "alpha": 0.5, "gamma": 0.5}, 4 * E[1]),
    ({"liked": [-E[2]], "beta": 1.0}, E[2]),
    ({"liked": [E[1]], "rejected": [normalise(4 * E[0] + 3 * E[1])], "alpha": 0.8, "beta": 0.6, "gamma": 1.0},
     E[0]),
])
def test_feedback_that_cancels_the_query_keeps_the_query(kwargs: dict[str, object], query: np.ndarray) -> None:
    got = rocchio(query, **kwargs)  # type: ignore[arg-type]
    assert got.dtype == np.float32
    close(got, normalise(query))
