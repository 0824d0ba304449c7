"""CLIP encoding through from_pretrained: normalised float32, batch equals single, long text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import ConfigError, ModelLoadError
from core.media.images import decode_image
from core.models.clip import ClipEncoder


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


def test_auto_falls_back_to_fp32_when_nothing_agrees(clip_dir: Path) -> None:
    from core.models.precision import prepare

    calls: list[str] = []

    def encode(candidate: object) -> np.ndarray:
        calls.append(candidate.precision)
        vectors = np.eye(3, dtype=np.float32)
        return vectors if calls[-1] == "fp32" else vectors[::-1]  # candidates disagree completely

    import torch

    prepared = prepare(torch.nn.Linear(2, 2), "auto", "cpu", encode)
    assert prepared.precision == "fp32" and calls == ["fp32", "int8", "bf16"]


def test_bad_precision_setting(clip_dir: Path) -> None:
    import torch

    from core.errors import ConfigError
    from core.models.precision import convert

    with pytest.raises(ConfigError, match="CLIPBOT_PRECISION"):
        ClipEncoder(str(clip_dir), precision="int3").load()
    with pytest.raises(ConfigError, match="CPU only"):
        convert(torch.nn.Linear(2, 2), "int8", "cuda")
