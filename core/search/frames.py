"""Searching with a video or animation: every sampled frame searches, the best frame per image wins.

The engine encodes a video's frames (core.media.video) as one batch; each frame's vector searches the
gallery on its own, and the lists merge: each image keeps its best score over the frames, with
the moment of that frame, and the merged list is ranked by those scores. The best frame's
vector is the query a conversation remembers for "More like this" / "Not this".
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import replace

import numpy as np

from core.media.video import representative
from core.search.words import SearchResult

SearchVector = Callable[[np.ndarray], Awaitable[list[SearchResult]]]


def merge_frame_results(per_frame: Sequence[Sequence[SearchResult]], moments: Sequence[float | None],
                        k: int) -> tuple[list[SearchResult], int | None]:
    """The ``k`` best images over all frames' results, each at its best frame's score and moment,
    and the index of the frame that gave the best of them (None: no results at all).

    Exact for the top ``k`` when each frame's list is its own top ``k``: an image among the best
    ``k`` by its best score ranks among the best ``k`` of the frame that gave that score.
    """
    best: dict[int, tuple[SearchResult, int]] = {}
    for frame, (results, moment) in enumerate(zip(per_frame, moments, strict=True)):
        for result in results:
            held = best.get(result.id)
            if held is None or result.score > held[0].score:
                best[result.id] = (replace(result, moment=moment), frame)
    ranked = sorted(best.values(), key=lambda pair: -pair[0].score)[:k]
    return [result for result, _ in ranked], (ranked[0][1] if ranked else None)


async def match_frames(search: SearchVector, vectors: np.ndarray, moments: Sequence[float | None],
                       k: int) -> tuple[list[SearchResult], np.ndarray]:
    """Search with every frame's vector (``search`` returns a vector's top ``k``) and merge; returns
    the results and the query vector to remember: the best frame's, or with no results the most
    representative frame's."""
    per_frame = [await search(vector) for vector in vectors]
    results, best = merge_frame_results(per_frame, moments, k)
    return results, vectors[best if best is not None else representative(vectors)]
