"""The benchmark suite in its smoke mode: tiny sizes, so that it cannot rot (timings are not checked)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.report import TARGETS


@pytest.mark.filterwarnings("ignore")
def test_bench_smoke_writes_every_metric(tmp_path: Path) -> None:
    from bench.run import main

    assert main(["--smoke", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "smoke.json").read_text())
    for section, key, _, _ in TARGETS:
        if key == "faiss_time_ratio_100k" and not results["search"]["faiss_p50_ms"]:
            continue  # faiss is optional (the bench extra)
        if key == "gpu_p50_ms_1m" and not torch.cuda.is_available():
            assert results["search"]["gpu_index"] == "not measured (no CUDA device)"
            continue  # the GPU index is measured where there is a GPU
        assert key in results[section], f"{section}.{key} missing"
    # Each device measures its own precisions: int8 is a CPU kernel, fp16 takes its place on CUDA.
    cuda = torch.cuda.is_available()
    assert results["encode"]["default_precision"] in (("fp16", "fp32") if cuda else ("int8", "bf16", "fp32"))
    assert {f"clipbot_{p}" for p in (("fp16",) if cuda else ("int8",))} <= {
        key.rsplit("_b", 1)[0] for key in results["encode"]["images_per_s"]}
    search = results["search"]
    if cuda:  # the index in GPU memory, beside the host one
        assert search["gpu_p50_ms_1m"] > 0 and search["gpu_index"].startswith("fp16 on ")
    else:
        assert "gpu_p50_ms_1m" not in search and search["gpu_index"] == "not measured (no CUDA device)"
    assert "| `search.p50_ms_1m` |" in (tmp_path / "smoke.md").read_text()
    # The soak drives the real bot through the fake Bot API: every request must get its answer.
    soak = results["soak"]
    assert soak["unanswered"] == 0, soak["timed_out_examples"]
    assert soak["requests"] == sum(soak["kinds"].values())
    assert "| `soak.unanswered` |" in (tmp_path / "smoke.md").read_text()
    for plot in ("search", "encode", "e2e", "soak"):
        assert Image.open(tmp_path / f"smoke-{plot}.png").format == "PNG"


def test_bench_times_the_tensor_index_on_any_device() -> None:
    """The GPU measurement's code, run on the CPU (and on CUDA where there is one)."""
    from bench.search import DIM, device_p50_ms

    matrix = np.random.default_rng(1).standard_normal((500, DIM)).astype(np.float32)
    for device in ("cpu", *(["cuda"] if torch.cuda.is_available() else [])):
        ms = device_p50_ms(matrix, matrix[7], device=device, smoke=True)
        assert ms is not None and ms > 0
