"""The benchmark suite in its smoke mode: tiny sizes, so that it cannot rot (timings are not checked)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
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
        assert key in results[section], f"{section}.{key} missing"
    assert results["encode"]["default_precision"] in ("int8", "bf16", "fp16", "fp32")
    assert "| `search.p50_ms_1m` |" in (tmp_path / "smoke.md").read_text()
    # The soak drives the real bot through the fake Bot API: every request must get its answer.
    soak = results["soak"]
    assert soak["unanswered"] == 0, soak["timed_out_examples"]
    assert soak["requests"] == sum(soak["kinds"].values())
    assert "| `soak.unanswered` |" in (tmp_path / "smoke.md").read_text()
    for plot in ("search", "encode", "e2e", "soak"):
        assert Image.open(tmp_path / f"smoke-{plot}.png").format == "PNG"
