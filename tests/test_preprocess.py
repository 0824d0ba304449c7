"""The fast CLIP preprocessing agrees with transformers' reference processor (PIL backend)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from core.media.images import decode_image
from core.models.clip import CPU_BATCH_SIZE, ClipEncoder
from core.models.preprocess import REDUCING_GAP, FastClipPreprocessor

BOUND = 0.999


@pytest.fixture(scope="module")
def images(photos: dict[str, Path]) -> list[Image.Image]:
    return [decode_image(p).image for p in photos.values()]


def reference_processor(**kwargs: Any) -> Any:
    from transformers import CLIPImageProcessorPil

    return CLIPImageProcessorPil(**kwargs)  # defaults: openai/clip-vit-base-patch32's (224, bicubic)


def reference(processor: Any, images: list[Image.Image]) -> np.ndarray:
    return np.asarray(processor(images=images, return_tensors="np")["pixel_values"], np.float32)


def row_cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    return np.asarray((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))


@pytest.mark.parametrize("gap", [None, REDUCING_GAP])
def test_pixels_agree_with_clip_processor_on_package_photos(images: list[Image.Image], gap: float | None) -> None:
    processor = reference_processor()
    fast = FastClipPreprocessor.from_processor(processor, reducing_gap=gap)
    assert fast is not None
    got, want = fast(images), reference(processor, images)
    assert got.shape == want.shape == (len(images), 3, 224, 224)
    assert got.dtype == np.float32
    cosines = row_cosines(got, want)
    assert cosines.min() >= BOUND, cosines
    assert row_cosines(got.reshape(1, -1), want.reshape(1, -1))[0] >= 0.9999
    # Exact filter: at most one uint8 level apart (float rounding of the crop box); reduced: a few.
    step = 1 / 255 / min(processor.image_std)
    assert np.abs(got - want).max() <= (1.01 if gap is None else 4) * step
    if gap is None:
        assert cosines.min() >= 0.99999


@pytest.mark.parametrize("size, crop", [(40, (32, 36)), (33, (33, 33)), (224, (224, 224))])
def test_other_sizes_and_upscaling(images: list[Image.Image], size: int, crop: tuple[int, int]) -> None:
    """Odd and non-square crops, and images smaller than the target (resized up)."""
    processor = reference_processor(size={"shortest_edge": size}, crop_size={"height": crop[0], "width": crop[1]})
    small = [im.resize((max(1, im.width // 9), max(1, im.height // 9))) for im in images[:4]]
    batch = images[:4] + small + [Image.new("RGB", (size, size + 7), (10, 200, 30))]
    fast = FastClipPreprocessor.from_processor(processor, reducing_gap=REDUCING_GAP)
    assert fast is not None
    got, want = fast(batch), reference(processor, batch)
    assert got.shape == want.shape
    assert row_cosines(got, want).min() >= BOUND


def test_parallel_and_serial_give_the_same_pixels(images: list[Image.Image]) -> None:
    processor = reference_processor()
    parallel = FastClipPreprocessor.from_processor(processor, parallel=True)
    serial = FastClipPreprocessor.from_processor(processor, parallel=False)
    assert parallel is not None and serial is not None
    np.testing.assert_array_equal(parallel(images * 2), serial(images * 2))


def test_configs_the_fast_path_does_not_cover_keep_the_reference() -> None:
    assert FastClipPreprocessor.from_processor(reference_processor(do_center_crop=False)) is None
    assert FastClipPreprocessor.from_processor(reference_processor(do_resize=False)) is None
    assert FastClipPreprocessor.from_processor(
        reference_processor(size={"height": 224, "width": 224})
    ) is None
    assert FastClipPreprocessor.from_processor(
        reference_processor(size={"shortest_edge": 100}, crop_size={"height": 224, "width": 224})
    ) is None  # the crop is larger than the resized image: the reference pads


def test_normalisation_settings_are_read_from_the_processor(images: list[Image.Image]) -> None:
    processor = reference_processor(image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.25, 0.5], resample=2)
    fast = FastClipPreprocessor.from_processor(processor, reducing_gap=None)
    assert fast is not None and fast.resample == Image.Resampling.BILINEAR
    np.testing.assert_allclose(fast(images[:3]), reference(processor, images[:3]), atol=1.01 / 255 / 0.25)
    plain = reference_processor(do_normalize=False)
    fast_plain = FastClipPreprocessor.from_processor(plain, reducing_gap=None)
    assert fast_plain is not None
    np.testing.assert_allclose(fast_plain(images[:3]), reference(plain, images[:3]), atol=1.01 / 255)


def test_encoder_uses_the_fast_path_and_its_vectors_agree(encoder: ClipEncoder, images: list[Image.Image]) -> None:
    assert encoder._fast is not None
    got = encoder.preprocess(images)
    want = reference(encoder._processor, images)
    assert got.shape == want.shape
    assert row_cosines(got, want).min() >= BOUND
    vectors, reference_vectors = encoder.encode_pixels(got), encoder.encode_pixels(want)
    assert float(np.min(np.sum(vectors * reference_vectors, axis=1))) >= BOUND
    np.testing.assert_allclose(encoder.encode_images(images), vectors, atol=1e-5)


def test_encoder_sends_images_that_are_not_rgb_to_the_reference(encoder: ClipEncoder,
                                                                 images: list[Image.Image]) -> None:
    grey = images[0].convert("L")
    np.testing.assert_array_equal(encoder.preprocess([grey]), reference(encoder._processor, [grey]))
    assert encoder.preprocess([]).shape[0] == 0


def test_fast_preprocess_can_be_switched_off_and_batch_size_follows_the_device(clip_dir: Path,
                                                                               images: list[Image.Image]) -> None:
    plain = ClipEncoder(str(clip_dir), device="cpu", fast_preprocess=False)
    plain.load()
    assert plain._fast is None and plain.batch_size == CPU_BATCH_SIZE
    np.testing.assert_array_equal(plain.preprocess(images[:2]), reference(plain._processor, images[:2]))
    chosen = ClipEncoder(str(clip_dir), device="cpu", batch_size=3)
    chosen.load()
    assert chosen.batch_size == 3
