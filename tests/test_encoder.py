"""CLIP encoding through from_pretrained: normalised float32, batch equals single, long text."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from core.errors import ConfigError, ModelLoadError
from core.media.images import decode_image
from core.models.clip import ClipEncoder
from core.models.precision import INDEX_BATCHES, Prepared, prepare, score


def test_encoder_is_lazy(clip_dir: Path) -> None:
    enc = ClipEncoder(str(clip_dir), precision="fp32")
    assert not enc.loaded
    assert enc.dim == 16 and enc.loaded


def test_image_vectors_are_unit_float32(encoder: ClipEncoder, photos: dict[str, Path]) -> None:
    vecs = encoder.encode_images([decode_image(photos[n]).image for n in ("astronaut", "coffee", "rocket")])
    assert vecs.dtype == np.float32 and vecs.shape == (3, encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(vecs, axis=1), 1.0, atol=1e-5)


def test_single_equals_batched(encoder: ClipEncoder, photos: dict[str, Path]) -> None:
    images = [decode_image(p).image for p in photos.values()]
    batch = encoder.encode_images(images)
    for i, img in enumerate(images):
        np.testing.assert_allclose(encoder.encode_images([img])[0], batch[i], atol=1e-5)


def test_text_single_equals_batched_and_long_text_truncated(encoder: ClipEncoder) -> None:
    texts = ["a cat", "a rocket on a launch pad", "coffee " * 300]
    batch = encoder.encode_texts(texts)
    assert batch.shape == (3, encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(batch, axis=1), 1.0, atol=1e-5)
    for i, t in enumerate(texts):
        np.testing.assert_allclose(encoder.encode_texts([t])[0], batch[i], atol=1e-5)


def test_empty_batches(encoder: ClipEncoder) -> None:
    assert encoder.encode_images([]).shape == (0, encoder.dim)
    assert encoder.encode_texts([]).shape == (0, encoder.dim)


def test_chunking_by_batch_size(clip_dir: Path) -> None:
    enc = ClipEncoder(str(clip_dir), batch_size=2, precision="fp32")
    imgs = [Image.new("RGB", (50, 50), c) for c in ("red", "green", "blue", "white", "black")]
    full = ClipEncoder(str(clip_dir), batch_size=16, precision="fp32").encode_images(imgs)
    np.testing.assert_allclose(enc.encode_images(imgs), full, atol=1e-5)


@pytest.mark.parametrize("source", ["/nonexistent/clip-model", "nobody/no-such-clip-model"])
def test_missing_model_is_one_line_naming_the_setting(source: str) -> None:
    enc = ClipEncoder(source)
    with pytest.raises(ModelLoadError) as info:
        enc.load()
    message = str(info.value)
    assert "\n" not in message
    assert "CLIPBOT_CLIP_MODEL" in message and source in message
    # A path is a typo to fix here; a hub id missing from the cache is fetched with download-models.
    assert ("no such directory" if source.startswith("/") else "download-models") in message
    assert not enc.loaded


@pytest.mark.parametrize("precision", ["bf16", "int8", "auto"])
def test_faster_precisions_agree_with_fp32(clip_dir: Path, encoder: ClipEncoder, photos: dict[str, Path],
                                           precision: str) -> None:
    fast = ClipEncoder(str(clip_dir), precision=precision)
    if precision == "int8" and encoder.device != "cpu":  # dynamic int8 quantisation is a CPU kernel
        with pytest.raises(ConfigError, match="int8 runs on the CPU only"):
            fast.load()
        return
    images = [decode_image(p).image for p in photos.values()]
    agreement = np.sum(fast.encode_images(images) * encoder.encode_images(images), axis=1)
    assert agreement.min() >= 0.99
    texts = ["a cat on a rug", "a rocket"]
    assert np.sum(fast.encode_texts(texts) * encoder.encode_texts(texts), axis=1).min() >= 0.99
    if precision == "auto":  # it picks among the precisions that are fast on the device it runs on
        assert fast.precision_used in (("int8", "bf16", "fp32") if encoder.device == "cpu" else ("fp16",))
    else:
        assert fast.precision_used == precision
    if precision == "auto":  # it measured before choosing
        assert fast.agreement is not None and fast.agreement >= 0.99
    # int8's activation scales are per batch, so a vector may move slightly with its neighbours.
    single = fast.encode_images(images[:1])[0]
    assert float(single @ fast.encode_images(images)[0]) >= 0.999


def _agreeing(*disagree: str) -> Callable[[Prepared], np.ndarray]:
    """A calibration encoder under which every precision gives fp32's vectors, except ``disagree``."""
    vectors = np.eye(3, dtype=np.float32)
    return lambda candidate: vectors[::-1] if candidate.precision in disagree else vectors


class FakeClock:
    """The timing seam: ``time_batch(prepared, n)`` answers from a table of images/s by precision
    and batch (a batch missing from a precision's table runs at its last entry's speed), and
    records what was timed. Nothing runs the model, so the choice is the same on every machine."""

    def __init__(self, table: dict[str, dict[int, float]]) -> None:
        self.table = table
        self.timed: list[tuple[str, int]] = []

    def __call__(self, prepared: Prepared, n: int) -> float:
        self.timed.append((prepared.precision, n))
        speeds = self.table[prepared.precision]
        return n / speeds.get(n, speeds[max(b for b in speeds if b <= n)])

    def batches(self, precision: str) -> list[int]:
        return sorted({n for p, n in self.timed if p == precision})


# Shaped like ViT-B/32 on 2 Zen 4 cores: int8 peaks at 8; bf16 climbs with the batch, with a dip at 16.
ZEN4 = {"fp32": {1: 20.0, 8: 25.0, 16: 26.0, 32: 26.0, 64: 25.0}, "int8": {1: 26.9, 8: 49.8, 16: 40.0, 32: 33.3},
        "bf16": {1: 31.3, 8: 60.9, 16: 45.0, 32: 100.0, 64: 95.0}}


def test_auto_picks_the_fastest_agreeing_precision_and_its_fastest_index_batch() -> None:
    clock = FakeClock(ZEN4)
    prepared = prepare(torch.nn.Linear(2, 2), "auto", "cpu", _agreeing(), clock)
    assert prepared.precision == "bf16" and prepared.agreement == 1.0
    measured = prepared.measurement
    assert measured is not None and measured.index_batch == 32
    assert measured.agreements == {"fp32": 1.0, "int8": 1.0, "bf16": 1.0}
    assert measured.images_per_s["bf16"] == pytest.approx(ZEN4["bf16"])
    # bf16's dip at 16 does not hide its peak at 32: every candidate batch within the budget is timed.
    assert clock.batches("bf16") == clock.batches("int8") == [1, *INDEX_BATCHES]
    # The other way round, the other wins: it is the figures that choose, not an order of preference.
    swapped = FakeClock({"fp32": ZEN4["fp32"], "int8": ZEN4["bf16"], "bf16": ZEN4["int8"]})
    assert prepare(torch.nn.Linear(2, 2), "auto", "cpu", _agreeing(), swapped).precision == "int8"


def test_auto_never_times_a_precision_that_disagrees() -> None:
    clock = FakeClock(ZEN4)
    prepared = prepare(torch.nn.Linear(2, 2), "auto", "cpu", _agreeing("bf16"), clock)
    assert prepared.precision == "int8" and prepared.measurement is not None
    assert prepared.measurement.index_batch == 8
    assert prepared.measurement.agreements["bf16"] < 0.99 and "bf16" not in prepared.measurement.images_per_s
    assert clock.batches("bf16") == []


def test_chat_and_index_speed_weigh_alike() -> None:
    # int8 answers a chat photo 1.5x faster; bf16 indexes 2x faster: the geometric mean picks bf16.
    table = {"fp32": {1: 10.0, 8: 10.0}, "int8": {1: 45.0, 8: 50.0, 16: 40.0}, "bf16": {1: 30.0, 8: 60.0, 16: 100.0}}
    assert prepare(torch.nn.Linear(2, 2), "auto", "cpu", _agreeing(), FakeClock(table)).precision == "bf16"
    table["int8"] = {1: 80.0, 8: 50.0, 16: 40.0}  # ...unless its chat lead is larger than bf16's index lead
    assert score(table["int8"]) > score(table["bf16"])
    assert prepare(torch.nn.Linear(2, 2), "auto", "cpu", _agreeing(), FakeClock(table)).precision == "int8"


def test_a_slow_precision_stops_timing_within_its_budget() -> None:
    clock = FakeClock({"fp32": {1: 2.0, 8: 3.0, 16: 3.1, 32: 3.2}, "int8": ZEN4["int8"], "bf16": ZEN4["bf16"]})
    prepare(torch.nn.Linear(2, 2), "auto", "cpu", _agreeing(), clock)
    # Batches 1 and 8 (always timed) took fp32 about 10 s, past its 6: 16 (another 5 s) is not tried.
    assert clock.batches("fp32") == [1, 8]
    assert clock.batches("bf16") == [1, 8, 16, 32, 64]  # the fast one gets through all candidates


def test_auto_falls_back_to_fp32_when_nothing_agrees() -> None:
    calls: list[str] = []

    def encode(candidate: Prepared) -> np.ndarray:
        calls.append(candidate.precision)
        vectors = np.eye(3, dtype=np.float32)
        return vectors if calls[-1] == "fp32" else vectors[::-1]  # candidates disagree completely

    clock = FakeClock(ZEN4)
    prepared = prepare(torch.nn.Linear(2, 2), "auto", "cpu", encode, clock)
    assert prepared.precision == "fp32" and calls == ["fp32", "int8", "bf16"]
    assert prepared.measurement is not None and prepared.measurement.index_batch == 16
    assert {p for p, _ in clock.timed} == {"fp32"}


def test_on_a_gpu_auto_keeps_fp16_when_it_agrees_and_times_nothing() -> None:
    clock = FakeClock(ZEN4)
    prepared = prepare(torch.nn.Linear(2, 2), "auto", "cuda", _agreeing(), clock)
    assert prepared.precision == "fp16" and clock.timed == []
    assert prepared.measurement is not None and prepared.measurement.index_batch is None


def test_auto_sets_the_cpu_batch_it_measured_unless_one_is_configured(clip_dir: Path) -> None:
    auto = ClipEncoder(str(clip_dir), precision="auto")
    auto.load()
    if auto.device != "cpu":
        pytest.skip("the batch is measured on a CPU only")
    assert auto.measurement is not None and auto.batch_size == auto.measurement.index_batch
    assert auto.batch_size in INDEX_BATCHES
    fixed = ClipEncoder(str(clip_dir), precision="auto", batch_size=3)
    fixed.load()
    assert fixed.batch_size == 3


def test_bad_precision_setting(clip_dir: Path) -> None:
    from core.models.precision import convert

    with pytest.raises(ConfigError, match="CLIPBOT_PRECISION"):
        ClipEncoder(str(clip_dir), precision="int3").load()
    with pytest.raises(ConfigError, match="CPU only"):
        convert(torch.nn.Linear(2, 2), "int8", "cuda")
