"""Renderings kept per file: hits without a second render, new renders for edited files, a byte
budget that drops the least recently used, and the previews and collage tiles built on it."""

from __future__ import annotations

import io
import os
import shutil
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import core.render.previews as previews
import core.render.visuals as visuals
from core.render.file_cache import FileCache
from core.render.previews import make_preview
from core.render.visuals import TILE_SIDE, result_tiles
from core.search.words import SearchResult

GREY = (230, 230, 230)


class Maker:
    """A ``make`` for :meth:`FileCache.get` that counts its calls and returns ``value``."""

    def __init__(self, value: bytes | None) -> None:
        self.value, self.calls = value, 0

    def __call__(self) -> bytes | None:
        self.calls += 1
        return self.value


def written(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def bump_mtime(path: Path, by_ns: int = 1_000_000_000) -> None:
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + by_ns))


def replace_in_place(path: Path, source: Path) -> None:
    """``source``'s bytes written over ``path``, its mtime surely not the old one's (coarse clocks)."""
    before = path.stat().st_mtime_ns
    shutil.copyfile(source, path)
    if path.stat().st_mtime_ns == before:
        bump_mtime(path)
    assert path.stat().st_mtime_ns != before


def rgb(path: Path) -> Image.Image:
    with Image.open(path) as img:
        return img.convert("RGB")


def mean_diff(a: Image.Image, b: Image.Image) -> float:
    assert a.size == b.size
    return float(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).mean())


@pytest.fixture(autouse=True)
def empty_module_caches() -> Iterator[None]:
    """The previews and tiles kept by the modules, empty before and after each test."""
    previews._PREVIEWS.clear()
    visuals._TILES.clear()
    yield
    previews._PREVIEWS.clear()
    visuals._TILES.clear()


# FileCache


def test_a_second_get_of_an_unchanged_file_is_a_hit_without_rendering(tmp_path: Path) -> None:
    cache: FileCache[bytes] = FileCache(1000, len)
    path = written(tmp_path / "a.bin", b"picture")
    make = Maker(b"rendered")
    first = cache.get(path, "preview", make)
    second = cache.get(path, "preview", make)
    assert first == b"rendered"
    assert second is first
    assert make.calls == 1
    assert (cache.hits, cache.misses) == (1, 1)
    assert len(cache) == 1 and cache.held_bytes == len(b"rendered")


def test_the_same_file_named_by_str_or_path_is_one_entry(tmp_path: Path) -> None:
    cache: FileCache[bytes] = FileCache(1000, len)
    path = written(tmp_path / "a.bin", b"picture")
    make = Maker(b"rendered")
    cache.get(path, 1, make)
    cache.get(str(path), 1, make)
    assert make.calls == 1 and len(cache) == 1


def test_each_variant_of_a_file_is_its_own_entry(tmp_path: Path) -> None:
    cache: FileCache[bytes] = FileCache(1000, len)
    path = written(tmp_path / "a.bin", b"picture")
    small, large = Maker(b"small"), Maker(b"large!")
    assert cache.get(path, (200, 85), small) == b"small"
    assert cache.get(path, (1280, 85), large) == b"large!"
    assert len(cache) == 2 and cache.held_bytes == len(b"small") + len(b"large!")
    assert cache.get(path, (200, 85), small) == b"small"
    assert cache.get(path, (1280, 85), large) == b"large!"
    assert (small.calls, large.calls) == (1, 1)
    assert (cache.hits, cache.misses) == (2, 2)


def test_a_file_rewritten_with_a_different_size_is_rendered_again(tmp_path: Path) -> None:
    cache: FileCache[bytes] = FileCache(1000, len)
    path = written(tmp_path / "a.bin", b"old picture")
    assert cache.get(path, 0, Maker(b"old rendering")) == b"old rendering"
    written(path, b"a new, longer picture")
    make = Maker(b"new rendering")
    assert cache.get(path, 0, make) == b"new rendering"
    assert make.calls == 1
    assert cache.get(path, 0, make) == b"new rendering"
    assert make.calls == 1


def test_a_file_rewritten_with_the_same_size_and_a_new_mtime_is_rendered_again(tmp_path: Path) -> None:
    cache: FileCache[bytes] = FileCache(1000, len)
    path = written(tmp_path / "a.bin", b"AAAA")
    before = path.stat()
    assert cache.get(path, 0, Maker(b"rendering of A")) == b"rendering of A"
    written(path, b"BBBB")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1))  # one nanosecond later is enough
    after = path.stat()
    assert after.st_size == before.st_size and after.st_mtime_ns != before.st_mtime_ns
    make = Maker(b"rendering of B")
    assert cache.get(path, 0, make) == b"rendering of B"
    assert make.calls == 1 and cache.misses == 2 and cache.hits == 0


def test_the_budget_drops_the_least_recently_used_entry_first(tmp_path: Path) -> None:
    cache: FileCache[bytes] = FileCache(10, len)
    a, b, c = (written(tmp_path / name, name.encode()) for name in ("a", "b", "c"))
    makers = {p: Maker(p.name.encode() * 4) for p in (a, b, c)}  # 4 bytes each: two fit, three do not

    def get(path: Path) -> bytes | None:
        value = cache.get(path, 0, makers[path])
        assert cache.held_bytes <= cache.budget_bytes
        return value

    get(a)
    get(b)
    assert cache.held_bytes == 8
    get(a)  # a is now the most recently used: b goes first
    get(c)
    assert len(cache) == 2 and cache.held_bytes == 8
    assert get(a) == b"aaaa" and makers[a].calls == 1
    assert get(c) == b"cccc" and makers[c].calls == 1
    assert get(b) == b"bbbb" and makers[b].calls == 2  # dropped, so rendered again
    assert len(cache) == 2 and cache.held_bytes == 8


def test_held_bytes_stays_within_the_budget_under_churn(tmp_path: Path) -> None:
    cache: FileCache[bytes] = FileCache(50, len)
    paths = [written(tmp_path / f"{i}.bin", bytes([i])) for i in range(12)]
    for round_ in range(3):
        for i, path in enumerate(paths):
            cache.get(path, round_ % 2, Maker(b"x" * (3 + i)))
            assert cache.held_bytes <= 50
            assert cache.held_bytes == sum(size for _, size in cache._entries.values())


def test_a_value_larger_than_the_budget_is_returned_but_not_kept(tmp_path: Path) -> None:
    cache: FileCache[bytes] = FileCache(10, len)
    small_path = written(tmp_path / "small.bin", b"s")
    huge_path = written(tmp_path / "huge.bin", b"h")
    cache.get(small_path, 0, Maker(b"small"))
    huge = Maker(b"h" * 11)
    assert cache.get(huge_path, 0, huge) == b"h" * 11
    assert cache.get(huge_path, 0, huge) == b"h" * 11
    assert huge.calls == 2
    # Nor did it push out what was there.
    assert len(cache) == 1 and cache.held_bytes == len(b"small")
    small = Maker(b"other")
    assert cache.get(small_path, 0, small) == b"small" and small.calls == 0


def test_a_render_that_gives_none_is_not_kept(tmp_path: Path) -> None:
    cache: FileCache[bytes] = FileCache(1000, len)
    path = written(tmp_path / "broken.jpg", b"not an image")
    make = Maker(None)
    assert cache.get(path, 0, make) is None
    assert cache.get(path, 0, make) is None
    assert make.calls == 2
    assert len(cache) == 0 and cache.held_bytes == 0 and cache.hits == 0


def test_a_missing_file_is_rendered_each_time_and_nothing_is_kept(tmp_path: Path) -> None:
    cache: FileCache[bytes] = FileCache(1000, len)
    make = Maker(b"placeholder")
    for _ in range(3):
        assert cache.get(tmp_path / "gone.jpg", 0, make) == b"placeholder"
    assert make.calls == 3
    assert len(cache) == 0 and cache.held_bytes == 0 and cache.hits == 0


def test_concurrent_gets_keep_the_held_bytes_equal_to_the_entries(tmp_path: Path) -> None:
    budget = 400
    cache: FileCache[bytes] = FileCache(budget, len)
    paths = [written(tmp_path / f"{i}.bin", bytes([i]) * (i + 1)) for i in range(16)]
    calls = 0
    calls_lock = threading.Lock()

    def render(i: int, variant: int) -> Callable[[], bytes]:
        def make() -> bytes:
            nonlocal calls
            with calls_lock:
                calls += 1
            return bytes([i, variant]) * (5 + 3 * i + variant)  # 10 to 104 bytes
        return make

    def work(worker: int) -> int:
        wrong = 0
        for n in range(300):
            i, variant = (n * 7 + worker * 3) % len(paths), n % 2
            value = cache.get(paths[i], variant, render(i, variant))
            wrong += value != bytes([i, variant]) * (5 + 3 * i + variant)
        return wrong

    with ThreadPoolExecutor(max_workers=8) as pool:
        wrong = sum(pool.map(work, range(8)))

    assert wrong == 0  # every get gave its own file's and variant's rendering
    assert cache.hits + cache.misses == 8 * 300
    assert calls == cache.misses
    assert cache.hits > 0 and cache.misses > 0
    sizes = [size for _, size in cache._entries.values()]
    assert all(len(value) == size for value, size in cache._entries.values())
    assert cache.held_bytes == sum(sizes) <= budget
    assert len(cache) == len(sizes) > 0


# previews


def decoded(jpeg: bytes) -> Image.Image:
    with Image.open(io.BytesIO(jpeg)) as img:
        assert img.format == "JPEG"
        return img.convert("RGB")


def test_a_stored_file_gives_the_same_preview_without_a_second_decode(
    tmp_path: Path, photos: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "stored.png"
    shutil.copyfile(photos["astronaut"], path)
    original = previews._render_preview
    renders: list[str] = []

    def counting(p: str | Path, max_side: int, quality: int) -> bytes | None:
        renders.append(os.fspath(p))
        return original(p, max_side, quality)

    monkeypatch.setattr(previews, "_render_preview", counting)
    first = make_preview(path)
    second = make_preview(path)
    assert first is not None and second is not None
    assert first == second
    assert renders == [os.fspath(path)]
    assert decoded(first).size == (512, 512)
    # Another size is another preview, rendered once too.
    small = make_preview(path, max_side=100)
    assert small is not None and decoded(small).size == (100, 100)
    assert make_preview(path, max_side=100) == small
    assert len(renders) == 2


def test_a_file_replaced_in_place_gives_the_new_pictures_preview(tmp_path: Path, photos: dict[str, Path]) -> None:
    path = tmp_path / "stored.jpg"
    shutil.copyfile(photos["astronaut"], path)
    old = make_preview(path)
    assert old is not None and decoded(old).size == (512, 512)

    replace_in_place(path, photos["grace_hopper"])
    new = make_preview(path)
    assert new is not None and new != old
    preview = decoded(new)
    hopper = rgb(photos["grace_hopper"])
    assert preview.size == hopper.size == (512, 600)
    assert mean_diff(preview, hopper) < 6  # the new picture, up to JPEG's losses
    assert mean_diff(preview, rgb(photos["astronaut"]).resize(hopper.size)) > 30


def test_a_missing_file_has_no_preview(tmp_path: Path) -> None:
    assert make_preview(tmp_path / "gone.jpg") is None
    assert make_preview(tmp_path / "gone.jpg") is None
    assert len(previews._PREVIEWS) == 0


def test_a_file_that_is_not_a_picture_has_no_preview(tmp_path: Path) -> None:
    path = written(tmp_path / "stored.jpg", b"this is not a JPEG")
    assert make_preview(path) is None
    assert len(previews._PREVIEWS) == 0


# collage tiles


def result(path: Path | None, id_: int = 1) -> SearchResult:
    return SearchResult(id=id_, label=f"picture {id_}", description="", path=None if path is None else str(path),
                        score=0.5)


def expected_tile(source: Path) -> Image.Image:
    img = rgb(source)
    img.thumbnail((TILE_SIDE, TILE_SIDE))
    return img


def test_tiles_of_stored_photos_are_small_rgb_copies_of_them(tmp_path: Path, photos: dict[str, Path]) -> None:
    names = ("astronaut", "coffee", "chelsea", "grace_hopper", "retina")
    paths = []
    for name in names:
        paths.append(tmp_path / f"{name}{photos[name].suffix}")
        shutil.copyfile(photos[name], paths[-1])
    tiles = result_tiles([result(p, i) for i, p in enumerate(paths)])
    assert len(tiles) == len(names)
    for i, (tile, name) in enumerate(zip(tiles, names, strict=True)):
        assert tile.image.mode == "RGB"
        assert max(tile.image.size) == TILE_SIDE  # every one of these photos is larger
        assert tile.image_id == i and tile.label == f"picture {i}"
        want = expected_tile(photos[name])
        assert tile.image.size == want.size
        assert mean_diff(tile.image, want) < 8
    assert tiles[1].image.size == (200, 133)  # coffee is 600x400: the aspect is kept


def test_a_result_whose_file_is_gone_gets_a_grey_tile(tmp_path: Path, photos: dict[str, Path]) -> None:
    present = tmp_path / "present.png"
    shutil.copyfile(photos["chelsea"], present)
    gone, nameless = result_tiles([result(tmp_path / "gone.png", 1), result(None, 2)])
    for tile in (gone, nameless):
        assert tile.image.mode == "RGB" and tile.image.size == (TILE_SIDE, TILE_SIDE)
        assert tile.image.getcolors() == [(TILE_SIDE * TILE_SIDE, GREY)]
    [kept] = result_tiles([result(present)])
    assert kept.image.size == (200, 133) and len(kept.image.getcolors(2**24) or []) > 1000


def test_a_tile_is_kept_and_an_edited_file_gets_a_new_one(
    tmp_path: Path, photos: dict[str, Path], monkeypatch: pytest.MonkeyPatch,
) -> None:
    path = tmp_path / "stored.png"
    shutil.copyfile(photos["astronaut"], path)
    original = visuals._decode_tile
    decodes: list[str] = []

    def counting(p: str) -> Image.Image | None:
        decodes.append(p)
        return original(p)

    monkeypatch.setattr(visuals, "_decode_tile", counting)
    [first] = result_tiles([result(path)])
    [again] = result_tiles([result(path)])
    assert again.image is first.image and decodes == [str(path)]
    assert first.image.size == (200, 200)

    replace_in_place(path, photos["coffee"])
    [edited] = result_tiles([result(path)])
    assert len(decodes) == 2
    assert edited.image.size == (200, 133)
    assert mean_diff(edited.image, expected_tile(photos["coffee"])) < 8
