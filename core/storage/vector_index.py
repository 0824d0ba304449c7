"""In-memory vector matrices, one per collection, searched by one matrix-vector product (a
batch of queries, as calibration sends: by one matrix product).

Storage is float16 by default: half the memory of float32 and, since a scan is bound by memory
bandwidth, about 2.5x faster (1M x 512 in ~45 ms on 2 cores, see docs/performance.md), at the
cost of scores accurate to about 0.001. ``float32`` keeps scores exact.

On a GPU (``device="cuda"``) each matrix is a torch tensor in GPU memory, scanned there (1M x 512
fp16 in about 0.5 ms on an H100) with the same ids, order and scores as the host path up to fp16
rounding. When GPU memory runs out the index moves itself to the host and says so once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from core.errors import DimensionMismatchError
from core.storage.shelves import HostShelf, Shelf, TensorShelf

log = logging.getLogger(__name__)
PRECISIONS = {"fp16": np.float16, "fp32": np.float32}
_TensorShelf = TensorShelf  # the name tests patch (tests/test_gpu_index.py)
# How many scores (queries x rows) :meth:`VectorIndex.search_many` computes at once: 64 MB of
# float32 (half that in fp16); 256 queries over 50,000 rows fit in one product.
SCORE_BUDGET = 1 << 24


def index_device(setting: str) -> str:
    """Where an index for an encoder on ``setting`` lives: a CUDA device ("auto" when a GPU is
    usable) or "cpu" (also for other accelerators, such as "mps")."""
    if setting == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return setting if setting.startswith("cuda") else "cpu"


def unit_rows(vectors: np.ndarray) -> np.ndarray:
    """Each row scaled to length 1, as float32; an all-zero row stays zero instead of becoming NaN."""
    x = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(x, axis=-1, keepdims=True)
    return np.asarray(x / np.maximum(norms, np.float32(1e-12)), dtype=np.float32)


def _is_out_of_memory(exc: BaseException) -> bool:
    import torch

    return isinstance(exc, torch.cuda.OutOfMemoryError)


class VectorIndex:
    """Unit vectors of every image, grouped by collection, kept in step with the database.

    Vectors are normalised on the way in, so a dot product is the cosine similarity even for
    vectors imported from elsewhere without normalisation.

    ``device``: "cpu" keeps numpy matrices in host memory; any other torch device ("cuda",
    "cuda:1") keeps torch tensors there. ``tensors=True`` uses torch tensors on "cpu" too (the
    GPU code path, testable without a GPU). If the device runs out of memory while placing or
    growing a matrix, the whole index moves to the host (:attr:`device` becomes "cpu").
    """

    def __init__(self, dim: int, precision: str = "fp16", device: str = "cpu", *,
                 tensors: bool | None = None) -> None:
        if precision not in PRECISIONS:
            raise ValueError(f"index precision must be one of {sorted(PRECISIONS)}, not {precision!r}")
        self.dim = dim
        self.precision = precision
        self.device = device
        self.tensors = device != "cpu" if tensors is None else tensors
        self._dtype = PRECISIONS[precision]
        self._shelves: dict[str, Shelf] = {}
        self._collection_of: dict[int, str] = {}
        # Searches scan on a worker thread (large indexes) while ingest adds rows on the event loop:
        # a lock keeps views whole.
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._collection_of)

    def count(self, collection: str) -> int:
        shelf = self._shelves.get(collection)
        return shelf.size if shelf else 0

    def _new_shelf(self) -> Shelf:
        if self.tensors:
            return TensorShelf(self.dim, self._dtype, self.device)
        return HostShelf(self.dim, self._dtype)

    def _to_host(self, exc: BaseException) -> None:
        """Out of device memory: every shelf moves to a numpy matrix in host memory (lock held)."""
        log.warning("vector index: %s is out of memory (%s); searching %d vectors on the CPU instead",
                    self.device, str(exc).split("\n")[0][:200], len(self._collection_of))
        shelves = self._shelves
        self.tensors, self.device, self._shelves = False, "cpu", {}
        for name, shelf in shelves.items():
            host = HostShelf(self.dim, self._dtype)
            if shelf.size:
                host.put(shelf.ids[: shelf.size].copy(), shelf.host_rows())
            self._shelves[name] = host
        shelves.clear()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _put(self, collection: str, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Insert rows (lock held), moving to the host if the device is out of memory."""
        try:
            self._shelves.setdefault(collection, self._new_shelf()).put(ids, vectors)
        except Exception as exc:
            if not (self.tensors and _is_out_of_memory(exc)):
                raise
            self._to_host(exc)
            self._shelves.setdefault(collection, self._new_shelf()).put(ids, vectors)

    def add(self, collection: str, ids: Sequence[int] | np.ndarray, vectors: np.ndarray) -> None:
        """Insert or replace the rows of ``ids`` in ``collection``."""
        vectors = np.asarray(vectors, dtype=np.float32).reshape(len(ids), -1)
        if vectors.shape[1] != self.dim:
            raise DimensionMismatchError(
                f"Vectors have dimension {vectors.shape[1]}, but the model makes {self.dim}-dimensional vectors."
            )
        vectors = unit_rows(vectors)
        ids_arr = np.asarray(ids, dtype=np.int64)
        with self._lock:
            for image_id in ids_arr.tolist():
                old = self._collection_of.get(image_id)
                if old is not None and old != collection:
                    self._shelves[old].drop(image_id)
                self._collection_of[image_id] = collection
            self._put(collection, ids_arr, vectors)

    def move_collection(self, old: str, new: str, *, drop: Sequence[int] = ()) -> None:
        """Move every row of ``old`` into ``new`` after removing the ids in ``drop``."""
        for image_id in drop:
            self.remove(image_id)
        with self._lock:
            shelf = self._shelves.pop(old, None)
            if shelf is None or shelf.size == 0:
                return
            ids, matrix = shelf.ids[: shelf.size].copy(), shelf.host_rows()
            for image_id in ids.tolist():
                del self._collection_of[image_id]
        self.add(new, ids, matrix)

    def remove(self, image_id: int) -> bool:
        with self._lock:
            collection = self._collection_of.pop(image_id, None)
            return collection is not None and self._shelves[collection].drop(image_id)

    def scores(self, query: np.ndarray, collections: Iterable[str]) -> tuple[np.ndarray, np.ndarray]:
        """Cosine of ``query`` with every row of ``collections``: ``(ids, scores)``."""
        q = _unit(query, self.dim)
        id_parts, score_parts = [], []
        with self._lock:
            for name in dict.fromkeys(collections):
                shelf = self._shelves.get(name)
                if shelf is None or shelf.size == 0:
                    continue
                score_parts.append(shelf.scan(q))
                id_parts.append(shelf.ids[: shelf.size].copy())
        if not id_parts:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
        return np.concatenate(id_parts), np.concatenate(score_parts)

    def search(self, query: np.ndarray, collections: Iterable[str], k: int) -> list[tuple[int, float]]:
        """The ``k`` best ``(id, cosine)`` pairs, best first."""
        if self.tensors:
            found = self._search_on_device(_unit(query, self.dim), collections, k)
            if found is not None:
                return found
        ids, scores = self.scores(query, collections)
        order = top_k_order(scores, k)
        return [(int(ids[i]), float(scores[i])) for i in order]

    def _search_on_device(self, q: np.ndarray, collections: Iterable[str],
                          k: int) -> list[tuple[int, float]] | None:
        """:meth:`search` with the scan and the top k on the device; only the candidates come back
        (see :func:`top_k_rows`). None when the index has moved to the host meanwhile."""
        import torch

        with self._lock:
            if not self.tensors:
                return None
            id_parts, score_parts, qt = [], [], None
            for name in dict.fromkeys(collections):
                shelf = self._shelves.get(name)
                if shelf is None or shelf.size == 0:
                    continue
                assert isinstance(shelf, TensorShelf)
                qt = shelf.query(q) if qt is None else qt
                score_parts.append(shelf.device_scores(qt))
                id_parts.append(shelf.ids[: shelf.size].copy())
        if not id_parts or k <= 0:
            return []
        ids = np.concatenate(id_parts)
        scores = torch.cat(score_parts) if len(score_parts) > 1 else score_parts[0]
        [(rows, best)] = top_k_rows(scores[None, :], k)
        return [(int(i), float(s)) for i, s in zip(ids[rows].tolist(), best.tolist(), strict=True)]

    def search_many(self, queries: np.ndarray, collections: Iterable[str],
                    k: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """:meth:`search` for each row of ``queries``: ``(ids, scores)`` arrays per row, best first.

        Each matrix scores a slice of the queries at once, by one matrix product (on the device
        for a GPU index) instead of one scan per query; the top k of each query are then picked
        as :meth:`search` picks them, so fp16 results are its own (see :meth:`Shelf.scan_many`).
        """
        import torch

        q = _unit(queries, self.dim, rows=True)
        names = list(dict.fromkeys(collections))
        if k <= 0:
            return [_nothing() for _ in range(len(q))]
        # A slice's scores stay under SCORE_BUDGET: a million-row gallery would otherwise hold a
        # gigabyte of them for 256 queries.
        step = max(1, SCORE_BUDGET // max(1, sum(self.count(name) for name in names)))
        found: list[tuple[np.ndarray, np.ndarray]] = []
        for start in range(0, len(q), step):
            block = q[start:start + step]
            with self._lock:  # per slice: ingest on the loop waits for one product, not for all
                shelves = [s for name in names if (s := self._shelves.get(name)) is not None and s.size]
                ids = np.concatenate([s.ids[: s.size] for s in shelves]) if shelves else None
                parts = [s.scan_many(block) for s in shelves]
            if ids is None:
                found.extend(_nothing() for _ in range(len(block)))
                continue
            scores = torch.cat(parts, dim=1) if len(parts) > 1 else parts[0]
            found.extend((ids[rows], best) for rows, best in top_k_rows(scores, k))
        return found

    def nbytes(self) -> int:
        """Memory held by the matrices and id arrays (capacity included)."""
        return sum(s.matrix_nbytes() + s.ids.nbytes for s in self._shelves.values())


def top_k_order(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the ``k`` largest scores, best first, ties broken by position (stable)."""
    n = len(scores)
    if k <= 0 or n == 0:
        return np.zeros(0, dtype=np.int64)
    if k < n:
        # argpartition picks an arbitrary few among scores tied with the k-th; every row scoring
        # at least the k-th is kept (usually k), so ties go to the earliest rows.
        kth = scores[np.argpartition(-scores, k - 1)[k - 1]]
        keep = np.flatnonzero(scores >= kth)
        return keep[np.lexsort((keep, -scores[keep]))][:k]
    return np.lexsort((np.arange(n), -scores))


def top_k_rows(scores: Any, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each row of a (queries, rows) torch tensor of scores: the positions of its ``k`` best,
    and their scores as float32, best first, ordered as :func:`top_k_order` orders.

    The device's top-k does not order ties: every position scoring at least its row's k-th comes
    back to the host (usually k), and those are sorted by score, then position.
    """
    import torch

    kth = torch.topk(scores, min(k, scores.shape[1]), dim=1, sorted=False).values.min(dim=1, keepdim=True).values
    rows, cols = torch.nonzero(scores >= kth, as_tuple=True)  # row by row, positions ascending
    values = scores[rows, cols].cpu().float().numpy()
    positions = cols.cpu().numpy()
    bounds = np.searchsorted(rows.cpu().numpy(), np.arange(scores.shape[0] + 1))
    out = []
    for lo, hi in zip(bounds[:-1].tolist(), bounds[1:].tolist(), strict=True):
        order = np.lexsort((positions[lo:hi], -values[lo:hi]))[:k]
        out.append((positions[lo:hi][order], values[lo:hi][order]))
    return out


def _nothing() -> tuple[np.ndarray, np.ndarray]:
    return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)


def _unit(query: np.ndarray, dim: int, *, rows: bool = False) -> np.ndarray:
    """``query`` (one vector, or with ``rows`` a matrix of one per row) as unit float32, checked
    against ``dim``."""
    q = np.asarray(query, dtype=np.float32)
    q = q.reshape(-1, q.shape[-1]) if rows else q.reshape(-1)
    if q.shape[-1] != dim:
        raise DimensionMismatchError(f"The query vector has dimension {q.shape[-1]}, the index {dim}.")
    return unit_rows(q)
