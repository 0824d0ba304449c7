"""Search latency: clipbot's index against the seed's per-row loop and faiss IndexFlatIP, and the
index in GPU memory where CUDA is available (``gpu_p50_ms_1m``; reported as not measured elsewhere)."""

from __future__ import annotations

from typing import Any

import numpy as np

from bench.common import p50, timed
from core.storage.vector_index import VectorIndex

DIM = 512


def _seed_loop_seconds(matrix: np.ndarray, query: np.ndarray, rows: int) -> float:
    """The seed's approach: scikit-learn's cosine_similarity once per database entry."""
    from sklearn.metrics.pairwise import cosine_similarity

    subset = matrix[:rows]

    def loop() -> list[float]:
        return [float(cosine_similarity(query[None, :], row[None, :])[0, 0]) for row in subset]

    return p50(timed(loop, repeats=3)) * len(matrix) / rows


def device_p50_ms(matrix: np.ndarray, query: np.ndarray, *, device: str, smoke: bool) -> float | None:
    """The index as torch tensors on ``device`` (fp16, as clipbot builds it next to a CUDA encoder;
    "cpu" runs the same code); None when the matrix did not fit (the index moved to the host)."""
    index = VectorIndex(DIM, "fp16", device=device, tensors=True)
    index.add("global", np.arange(len(matrix)), matrix)
    if not index.tensors:
        return None
    for _ in range(3):  # kernels load on first use
        index.search(query, ["global"], 10)
    # search() copies its results back to the host, so each call ends when the device's work does.
    seconds = timed(lambda: index.search(query, ["global"], 10), repeats=5 if smoke else 50)
    return 1000 * p50(seconds)


def run(*, smoke: bool) -> dict[str, Any]:
    sizes = (1_000, 5_000) if smoke else (10_000, 100_000, 1_000_000)
    rng = np.random.default_rng(0)
    import torch

    cuda = torch.cuda.is_available()
    result: dict[str, Any] = {"p50_ms": {}, "bytes_per_vector": {}, "seed_loop_ms": {}, "faiss_p50_ms": {},
                              "gpu_p50_ms": {}}
    for n in sizes:
        matrix = rng.standard_normal((n, DIM), dtype=np.float32)
        matrix /= np.linalg.norm(matrix, axis=1, keepdims=True)
        query = matrix[n // 2].copy()
        for precision in ("fp16", "fp32"):
            index = VectorIndex(DIM, precision)
            index.add("global", np.arange(n), matrix)
            seconds = timed(
                lambda index=index, query=query: index.search(query, ["global"], 10),
                repeats=5 if smoke else 15,
            )
            result["p50_ms"][f"{precision}_{n}"] = 1000 * p50(seconds)
            result["bytes_per_vector"][f"{precision}_{n}"] = index.nbytes() / n
            del index
        if cuda:
            gpu_ms = device_p50_ms(matrix, query, device="cuda", smoke=smoke)
            torch.cuda.empty_cache()  # the index is gone: its GPU memory goes back
            if gpu_ms is not None:
                result["gpu_p50_ms"][str(n)] = gpu_ms
        result["seed_loop_ms"][str(n)] = 1000 * _seed_loop_seconds(matrix, query, rows=200 if smoke else 1000)
        try:
            import faiss

            flat = faiss.IndexFlatIP(DIM)
            flat.add(matrix)
            seconds = timed(lambda flat=flat, query=query: flat.search(query[None, :], 10), repeats=15)
            result["faiss_p50_ms"][str(n)] = 1000 * p50(seconds)
            del flat
        except ImportError:
            pass
        del matrix
    small, mid, big = sizes[0], sizes[min(1, len(sizes) - 1)], sizes[-1]
    result["seed_loop_speedup_10k"] = result["seed_loop_ms"][str(small)] / result["p50_ms"][f"fp16_{small}"]
    if str(mid) in result["faiss_p50_ms"]:
        result["faiss_time_ratio_100k"] = result["p50_ms"][f"fp16_{mid}"] / result["faiss_p50_ms"][str(mid)]
    result["p50_ms_1m"] = result["p50_ms"][f"fp16_{big}"]
    # The index on the GPU (where the encoder runs on CUDA): measured only where there is one.
    if str(big) in result["gpu_p50_ms"]:
        result["gpu_p50_ms_1m"] = result["gpu_p50_ms"][str(big)]
        result["gpu_index"] = f"fp16 on {torch.cuda.get_device_name()}"
    else:
        result["gpu_index"] = "out of GPU memory" if cuda else "not measured (no CUDA device)"
    result["sizes"] = list(sizes)
    return result
