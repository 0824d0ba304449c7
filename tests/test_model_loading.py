"""Loading models: the remembered precision, the slow-load announcement, and one-line errors."""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.errors import ModelLoadError
from core.models.blip import BlipCaptioner
from core.models.clip import ClipEncoder
from core.models.hub import first_sentence, looks_like_path, model_load_error
from core.models.precision import CACHE_FILE, Measurement, PrecisionCache


@pytest.fixture
def own_clip(tmp_path: Path, clip_dir: Path) -> Path:
    """A private copy of the tiny CLIP, so a test may touch its files."""
    return Path(shutil.copytree(clip_dir, tmp_path / "clip"))


def _images() -> list[Image.Image]:
    return [Image.new("RGB", (40, 30), c) for c in ("red", "navy", "olive")]


def test_auto_precision_is_measured_once_then_remembered(own_clip: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    first = ClipEncoder(str(own_clip), precision="auto", cache_dir=cache)
    first.load()
    assert not first.precision_from_cache and first.agreement is not None
    assert (cache / CACHE_FILE).is_file()

    second = ClipEncoder(str(own_clip), precision="auto", cache_dir=cache)
    second.load()
    assert second.precision_from_cache
    assert (second.precision_used, second.agreement) == (first.precision_used, first.agreement)
    # The figures and the batch they chose come back too, for `clipbot stats` and for indexing.
    assert second.measurement == first.measurement and second.batch_size == first.batch_size
    images, texts = _images(), ["a cat", "a red car"]
    np.testing.assert_allclose(second.encode_images(images), first.encode_images(images), atol=1e-5)
    np.testing.assert_allclose(second.encode_texts(texts), first.encode_texts(texts), atol=1e-5)

    # Different model files: the decision is measured again, and the file then holds both.
    config = own_clip / "config.json"
    stat = config.stat()
    os.utime(config, ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    third = ClipEncoder(str(own_clip), precision="auto", cache_dir=cache)
    third.load()
    assert not third.precision_from_cache
    assert len(json.loads((cache / CACHE_FILE).read_text())["entries"]) == 2


def test_fixed_precision_and_no_cache_dir_never_touch_the_cache(own_clip: Path, tmp_path: Path) -> None:
    fixed = ClipEncoder(str(own_clip), precision="fp32", cache_dir=tmp_path / "c1")
    fixed.load()
    uncached = ClipEncoder(str(own_clip), precision="auto")
    uncached.load()
    assert not (tmp_path / "c1").exists() and not uncached.precision_from_cache


@pytest.mark.parametrize("damage", [b"{not json", b"[1, 2]", b'{"entries": {"x": 3}}', b"\xff\xfe"])
def test_a_damaged_cache_file_is_ignored_and_rewritten(own_clip: Path, tmp_path: Path, damage: bytes) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / CACHE_FILE).write_bytes(damage)
    enc = ClipEncoder(str(own_clip), precision="auto", cache_dir=cache)
    enc.load()
    assert not enc.precision_from_cache
    again = ClipEncoder(str(own_clip), precision="auto", cache_dir=cache)
    again.load()
    assert again.precision_from_cache


def test_an_unwritable_cache_is_not_fatal(own_clip: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("a file where the cache directory should be")
    enc = ClipEncoder(str(own_clip), precision="auto", cache_dir=blocker / "cache")
    enc.load()
    assert enc.precision_used and not enc.precision_from_cache


MEASURED = Measurement("bf16", 0.9999, agreements={"fp32": 1.0, "int8": 0.9996, "bf16": 0.9999},
                       images_per_s={"fp32": {1: 20.0, 8: 25.0}, "int8": {1: 26.9, 8: 49.8, 16: 40.0},
                                     "bf16": {1: 31.3, 8: 60.9, 16: 80.0, 32: 100.0, 64: 95.0}},
                       index_batch=32)


def test_cache_entries_for_other_keys_are_kept(tmp_path: Path) -> None:
    PrecisionCache(tmp_path, "a").store(MEASURED)
    PrecisionCache(tmp_path, "b").store(Measurement("fp16", None))
    assert PrecisionCache(tmp_path, "a").lookup() == MEASURED  # batch sizes come back as numbers
    assert PrecisionCache(tmp_path, "b").lookup() == Measurement("fp16", None)
    assert PrecisionCache(tmp_path, "c").lookup() is None
    assert not list(tmp_path.glob(".precision-*"))  # no temporary file left behind


def test_an_entry_of_the_old_format_loads_and_is_measured_again(own_clip: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    cache.mkdir()
    old = {"precision": "int8", "agreement": 0.9995, "saved": 1.0}  # what clipbot wrote before it timed
    (cache / CACHE_FILE).write_text(json.dumps({"entries": {"old": old}}))
    assert PrecisionCache(cache, "old").lookup() == Measurement("int8", 0.9995, legacy=True)

    # Under the key this machine uses now (as if it had matched): measured again, stored anew.
    key = PrecisionCache.for_model(cache, own_clip, "cpu").key
    (cache / CACHE_FILE).write_text(json.dumps({"entries": {key: old}}))
    enc = ClipEncoder(str(own_clip), precision="auto", device="cpu", cache_dir=cache)
    enc.load()
    assert not enc.precision_from_cache and enc.measurement is not None and enc.measurement.images_per_s
    stored = PrecisionCache(cache, key).lookup()
    assert stored is not None and not stored.legacy and stored == enc.measurement
    again = ClipEncoder(str(own_clip), precision="auto", device="cpu", cache_dir=cache)
    again.load()
    assert again.precision_from_cache and again.batch_size == enc.batch_size


def test_damaged_figures_in_an_entry_are_left_out(tmp_path: Path) -> None:
    entry = {"format": 2, "precision": "bf16", "agreement": "high", "agreements": [1],
             "images_per_s": {"bf16": {"1": 31.3, "x": 2, "8": "fast", "16": None}, "int8": 7},
             "index_batch": True}
    (tmp_path / CACHE_FILE).write_text(json.dumps({"entries": {"k": entry}}))
    assert PrecisionCache(tmp_path, "k").lookup() == Measurement("bf16", None, images_per_s={"bf16": {1: 31.3},
                                                                                               "int8": {}})


class _SlowClip(ClipEncoder):
    def __init__(self, source: str, delay: float, announce: list[str]) -> None:
        super().__init__(source, announce=announce.append)
        self.delay = delay

    def _load(self) -> None:
        time.sleep(self.delay)


class _SlowBlip(BlipCaptioner):
    def __init__(self, source: str, delay: float, announce: list[str]) -> None:
        super().__init__(source, announce=announce.append)
        self.delay = delay

    def _load(self) -> None:
        time.sleep(self.delay)


def test_a_slow_load_is_announced_once_even_with_concurrent_callers() -> None:
    said: list[str] = []
    enc = _SlowClip("openai/clip-vit-base-patch32", 2.0, said)
    threads = [threading.Thread(target=enc.load) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert said == ["Loading the CLIP model openai/clip-vit-base-patch32…"]

    captions: list[str] = []
    _SlowBlip("Salesforce/blip-image-captioning-base", 2.0, captions).load()
    assert captions == ["Loading the BLIP caption model Salesforce/blip-image-captioning-base…"]


def test_a_fast_load_is_not_announced() -> None:
    said: list[str] = []
    _SlowClip("some/model", 0.0, said).load()
    _SlowBlip("some/blip", 0.0, said).load()
    time.sleep(1.3)  # past the moment a timer left running would fire
    assert said == []


def test_a_failing_announcer_does_not_break_the_load() -> None:
    def broken(message: str) -> None:
        raise RuntimeError("terminal gone")

    enc = _SlowClip("some/model", 1.2, [])
    enc._announce = broken
    enc.load()
    assert enc.loaded


@pytest.mark.parametrize("source", ["/no/such/clip", "./clip-modle", "~/models/clip", "models/clip/vit-b32",
                                    "clip-model/", "C:\\models\\clip"])
def test_a_missing_directory_says_so(source: str) -> None:
    assert looks_like_path(source)
    with pytest.raises(ModelLoadError, match=r"^Cannot load the CLIP model from CLIPBOT_CLIP_MODEL: no such "
                                             r"directory: .*\. Fix: .*openai/clip-vit-base-patch32\.$"):
        ClipEncoder(source).load()
    with pytest.raises(ModelLoadError, match=r"CLIPBOT_CAPTION_MODEL: no such directory"):
        BlipCaptioner(source).load()


@pytest.mark.parametrize("source", ["openai/clip-vit-base-patch32", "laion/CLIP-ViT-B-32", "bert-base-uncased"])
def test_hub_ids_are_not_paths(source: str) -> None:
    assert not looks_like_path(source)


def test_a_directory_of_the_wrong_model_kind_is_one_line(clip_dir: Path, blip_dir: Path) -> None:
    with pytest.raises(ModelLoadError) as info:
        ClipEncoder(str(blip_dir)).load()
    message = str(info.value)
    assert "\n" not in message and "holds a blip model" in message and "not a CLIP model" in message
    assert message.startswith(f"CLIPBOT_CLIP_MODEL={blip_dir} ")
    with pytest.raises(ModelLoadError, match=r"holds a clip model .*not a BLIP caption model"):
        BlipCaptioner(str(clip_dir)).load()


def test_a_directory_without_config_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "model.safetensors").write_bytes(b"")
    with pytest.raises(ModelLoadError, match=r"holds no config\.json"):
        ClipEncoder(str(tmp_path)).load()


def test_reasons_keep_their_whole_first_sentence() -> None:
    long = ("Can't load the configuration of 'x'. If you were trying to load it from 'https://huggingface.co/models', "
            "make sure you don't have a local directory with the same name. Otherwise, make sure 'x' is right.")
    assert first_sentence(long) == "Can't load the configuration of 'x'."
    sentence = "We couldn't connect to 'https://huggingface.co' to load the files, " + "and more " * 20 + "in the end."
    assert first_sentence(sentence + " Second one.\nline two") == sentence
    message = str(model_load_error("CLIPBOT_CLIP_MODEL", "x", OSError(sentence)))
    assert sentence[:-1] in message and message.endswith("once with internet access.")
    assert first_sentence("") == ""
