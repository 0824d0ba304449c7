"""BLIP captioning through from_pretrained: lazy, deterministic, batch equals single, one-line errors."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from PIL import Image

from core.errors import ModelLoadError
from core.models.blip import BlipCaptioner, captioner_from_setting, tidy_caption


def _open(path: Path) -> Image.Image:
    return Image.open(path).convert("RGB")


def test_captioner_is_lazy(blip_dir: Path, photos: dict[str, Path]) -> None:
    cap = BlipCaptioner(str(blip_dir))
    assert not cap.loaded
    captions = cap.caption_images([_open(photos["coffee"])])
    assert cap.loaded and len(captions) == 1 and isinstance(captions[0], str)


def test_captions_are_deterministic_and_tidy(captioner: BlipCaptioner, photos: dict[str, Path]) -> None:
    images = [_open(photos[n]) for n in ("astronaut", "coffee", "rocket")]
    first = captioner.caption_images(images)
    assert first == captioner.caption_images(images)
    assert all(isinstance(c, str) for c in first)
    for caption in first:
        assert caption == caption.strip() and "  " not in caption and "\n" not in caption
        assert caption[:1] == caption[:1].upper()
        assert "[" not in caption  # special tokens are decoded away


def test_single_equals_batched(captioner: BlipCaptioner, photos: dict[str, Path]) -> None:
    images = [_open(photos[n]) for n in ("astronaut", "coffee", "rocket")]
    batch = captioner.caption_images(images)
    assert batch == [captioner.caption_images([img])[0] for img in images]
    # Different photos get different captions, so an order mix-up in the batch would show.
    assert len(set(batch)) > 1


def test_chunking_by_batch_size(blip_dir: Path, captioner: BlipCaptioner, photos: dict[str, Path]) -> None:
    images = [_open(p) for p in list(photos.values())[:5]]
    assert BlipCaptioner(str(blip_dir), batch_size=2).caption_images(images) == captioner.caption_images(images)


def test_empty_list(captioner: BlipCaptioner) -> None:
    assert captioner.caption_images([]) == []


def test_max_new_tokens_bounds_caption_length(blip_dir: Path, photos: dict[str, Path]) -> None:
    short = BlipCaptioner(str(blip_dir), max_new_tokens=2).caption_images([_open(photos["rocket"])])[0]
    assert len(short.split()) <= 2


def test_tidy_caption() -> None:
    assert tidy_caption("  a cat\n on   a  mat ") == "A cat on a mat"
    assert tidy_caption("") == "" and tidy_caption("  \n ") == ""


@pytest.mark.parametrize("source", ["/nonexistent/blip-model", "nobody/no-such-blip-model"])
def test_missing_model_is_one_line_naming_the_setting(source: str) -> None:
    cap = BlipCaptioner(source)
    with pytest.raises(ModelLoadError) as info:
        cap.caption_images([Image.new("RGB", (8, 8))])
    message = str(info.value)
    assert "\n" not in message
    assert "CLIPBOT_CAPTION_MODEL" in message and source in message
    assert not cap.loaded


@pytest.mark.parametrize("value", [None, "", "  ", "none", "None", "off", "OFF"])
def test_setting_can_turn_captioning_off(value: str | None) -> None:
    assert captioner_from_setting(value) is None


def test_setting_with_a_path_gives_an_unloaded_captioner(blip_dir: Path) -> None:
    cap = captioner_from_setting(str(blip_dir), batch_size=3)
    assert isinstance(cap, BlipCaptioner)
    assert cap.source == str(blip_dir) and cap.batch_size == 3 and not cap.loaded


class _CountingCaptioner(BlipCaptioner):
    def __init__(self, source: str) -> None:
        super().__init__(source)
        self.loads = 0

    def _load(self) -> None:
        self.loads += 1
        super()._load()


def test_concurrent_first_use_loads_once(blip_dir: Path, photos: dict[str, Path]) -> None:
    cap = _CountingCaptioner(str(blip_dir))
    images = [_open(photos[n]) for n in ("chelsea", "china")]
    barrier = threading.Barrier(4)
    results: list[list[str]] = []
    errors: list[BaseException] = []

    def work() -> None:
        try:
            barrier.wait()
            results.append(cap.caption_images(images))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors and len(results) == 4
    assert cap.loads == 1
    assert all(r == results[0] for r in results)
