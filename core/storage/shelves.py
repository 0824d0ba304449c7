"""One collection's vectors as a growable matrix: a numpy array in host memory
(:class:`HostShelf`) or a torch tensor on a device (:class:`TensorShelf`), each scanned by one
matrix-vector product, or for a batch of queries by one matrix product (:meth:`Shelf.scan_many`).
:class:`core.storage.vector_index.VectorIndex` keeps one per collection.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class Shelf:
    """One collection's rows: a growable (capacity, dim) matrix plus its image ids.

    The bookkeeping (ids, rows, growth, swap-with-last removal) lives here; where the matrix
    lives is the subclass's: a numpy array on the host, or a torch tensor (:class:`TensorShelf`).
    Every step that allocates happens before any state changes, so a failed allocation (GPU
    memory) leaves the shelf whole.
    """

    def __init__(self, dim: int) -> None:
        self.dim = dim
        self.ids = np.zeros(0, dtype=np.int64)
        self.size = 0
        self.row_of: dict[int, int] = {}

    # -- storage, per subclass --------------------------------------------------------------------

    def _grow(self, cap: int) -> None:
        """Reallocate the matrix to ``cap`` rows, keeping the first ``size``."""
        raise NotImplementedError

    def _write(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        """Store float32 ``vectors`` at ``rows``."""
        raise NotImplementedError

    def _write_block(self, start: int, vectors: np.ndarray) -> None:
        """Store float32 ``vectors`` at the rows from ``start`` on."""
        raise NotImplementedError

    def _move_row(self, dst: int, src: int) -> None:
        raise NotImplementedError

    def host_rows(self) -> np.ndarray:
        """The live rows as a float32 numpy array (a copy)."""
        raise NotImplementedError

    def scan(self, q: np.ndarray) -> np.ndarray:
        """Scores of the live rows against the unit float32 ``q``, as float32."""
        raise NotImplementedError

    def matrix_nbytes(self) -> int:
        raise NotImplementedError

    def _live(self) -> Any:
        """The live rows as a torch tensor in the storage type, where they are (no copy)."""
        raise NotImplementedError

    def _queries(self, queries: np.ndarray) -> Any:
        """Unit float32 query rows as a torch tensor in the storage type, beside :meth:`_live`'s."""
        raise NotImplementedError

    def scan_many(self, queries: np.ndarray) -> Any:
        """Scores of the live rows against each unit float32 row of ``queries``: a (queries, rows)
        torch tensor in the storage type, on the shelf's device, by one matrix product.

        torch's half-precision matrix product on the CPU sums each score as its gemv does (torch
        2.13; tests/test_gpu_index.py checks it), so fp16 scores are :meth:`scan`'s to the bit;
        fp32 ones (BLAS sgemm against sgemv) and a GPU's may differ in the last bit. numpy has no
        fast float16 product, hence torch on the host too.
        """
        import torch

        return torch.mm(self._queries(queries), self._live().T)

    # -- bookkeeping ------------------------------------------------------------------------------

    def put(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        updates: dict[int, int] = {}  # row -> index into vectors
        fresh: dict[int, int] = {}  # image id -> index into vectors; a repeated id keeps its last vector
        for i, image_id in enumerate(ids.tolist()):
            row = self.row_of.get(image_id)
            if row is None:
                fresh[image_id] = i
            else:
                updates[row] = i
        need = self.size + len(fresh)
        if need > len(self.ids):
            # Growing by half keeps inserts amortised O(1) with at most 50% slack; a bulk load
            # (the database at start) allocates exactly what it needs.
            self._grow(max(need, len(self.ids) + len(self.ids) // 2) if self.size else need)
        if updates:
            self._write(np.fromiter(updates, dtype=np.int64), vectors[np.fromiter(updates.values(), dtype=np.int64)])
        if fresh:
            self._write_block(self.size, vectors[np.fromiter(fresh.values(), dtype=np.int64)])
        self.ids[self.size:need] = list(fresh)
        for offset, image_id in enumerate(fresh):
            self.row_of[image_id] = self.size + offset
        self.size = need

    def drop(self, image_id: int) -> bool:
        row = self.row_of.pop(image_id, None)
        if row is None:
            return False
        last = self.size - 1
        if row != last:  # move the last row into the hole
            moved = int(self.ids[last])
            self._move_row(row, last)
            self.ids[row] = moved
            self.row_of[moved] = row
        self.size = last
        return True

    def _grow_ids(self, cap: int) -> np.ndarray:
        new_ids = np.zeros(cap, dtype=np.int64)
        new_ids[: self.size] = self.ids[: self.size]
        return new_ids


class HostShelf(Shelf):
    """The matrix as a numpy array in host memory."""

    def __init__(self, dim: int, dtype: type[np.floating[Any]]) -> None:
        super().__init__(dim)
        self.matrix = np.zeros((0, dim), dtype=dtype)

    def _grow(self, cap: int) -> None:
        matrix = np.zeros((cap, self.dim), dtype=self.matrix.dtype)
        matrix[: self.size] = self.matrix[: self.size]
        self.matrix, self.ids = matrix, self._grow_ids(cap)

    def _write(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        self.matrix[rows] = vectors  # cast on assignment

    def _write_block(self, start: int, vectors: np.ndarray) -> None:
        self.matrix[start:start + len(vectors)] = vectors

    def _move_row(self, dst: int, src: int) -> None:
        self.matrix[dst] = self.matrix[src]

    def host_rows(self) -> np.ndarray:
        return self.matrix[: self.size].astype(np.float32)

    def scan(self, q: np.ndarray) -> np.ndarray:
        return _scan(self.matrix[: self.size], q)

    def matrix_nbytes(self) -> int:
        return int(self.matrix.nbytes)

    def _live(self) -> Any:
        import torch

        return torch.from_numpy(self.matrix[: self.size])  # shares the memory: nothing is copied

    def _queries(self, queries: np.ndarray) -> Any:
        import torch

        return torch.from_numpy(np.ascontiguousarray(queries, dtype=self.matrix.dtype))


class TensorShelf(Shelf):
    """The matrix as a torch tensor on ``device`` (GPU memory for "cuda"; "cpu" works too, for tests)."""

    def __init__(self, dim: int, dtype: type[np.floating[Any]], device: str) -> None:
        import torch

        super().__init__(dim)
        self.device = torch.device(device)
        self.dtype = torch.float16 if dtype == np.float16 else torch.float32
        self.matrix = torch.zeros((0, dim), dtype=self.dtype, device=self.device)

    def _grow(self, cap: int) -> None:
        import torch

        matrix = torch.empty((cap, self.dim), dtype=self.dtype, device=self.device)
        matrix[: self.size] = self.matrix[: self.size]
        self.matrix, self.ids = matrix, self._grow_ids(cap)

    def _upload(self, vectors: np.ndarray) -> Any:
        import torch

        # Cast on the host, as numpy's assignment does, so both paths round to the same half floats.
        host = np.ascontiguousarray(vectors, dtype=np.float16 if self.dtype == torch.float16 else np.float32)
        return torch.from_numpy(host).to(self.device)

    def _write(self, rows: np.ndarray, vectors: np.ndarray) -> None:
        import torch

        values = self._upload(vectors)
        self.matrix[torch.from_numpy(rows).to(self.device)] = values

    def _write_block(self, start: int, vectors: np.ndarray) -> None:
        self.matrix[start:start + len(vectors)] = self._upload(vectors)

    def _move_row(self, dst: int, src: int) -> None:
        self.matrix[dst] = self.matrix[src]

    def host_rows(self) -> np.ndarray:
        rows: np.ndarray = self.matrix[: self.size].cpu().float().numpy()  # no float32 copy on the device
        return rows

    def device_scores(self, q: Any) -> Any:
        """Scores as a tensor on the device, in the storage dtype (``q`` is already there)."""
        import torch

        return torch.mv(self.matrix[: self.size], q)

    def query(self, q: np.ndarray) -> Any:
        import torch

        return torch.from_numpy(q.astype(np.float16 if self.dtype == torch.float16 else np.float32)).to(self.device)

    def scan(self, q: np.ndarray) -> np.ndarray:
        scores: np.ndarray = self.device_scores(self.query(q)).cpu().float().numpy()
        return scores

    def matrix_nbytes(self) -> int:
        return int(self.matrix.numel() * self.matrix.element_size())

    def _live(self) -> Any:
        return self.matrix[: self.size]

    def _queries(self, queries: np.ndarray) -> Any:
        return self.query(queries)


def _scan(matrix: np.ndarray, q: np.ndarray) -> np.ndarray:
    """``matrix @ q`` as float32 scores, by the fastest kernel for the storage type."""
    if matrix.dtype == np.float32:
        product: np.ndarray = matrix @ q  # BLAS sgemv
        return product
    # numpy has no fast float16 kernel; torch's half-precision gemv reads half the bytes of
    # float32 and accumulates in float32. from_numpy shares memory: nothing is copied.
    import torch

    scores = torch.mv(torch.from_numpy(matrix), torch.from_numpy(q.astype(np.float16)))
    result: np.ndarray = scores.float().numpy()
    return result
