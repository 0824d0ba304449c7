"""``clipbot index --shard K/N``: machines that index one tree take disjoint shares that cover it.

The share of a file is a hash of its path relative to the PATH argument, so it is the same on
every machine, Python version and PYTHONHASHSEED; two shares running at once against one
PostgreSQL gallery store every picture exactly once.
"""

from __future__ import annotations

import math
import shutil
import subprocess
import sys
import unicodedata
from collections import Counter
from pathlib import Path

import psycopg
import pytest

from bot.cli import build_parser, main
from core.errors import InputError
from core.gallery.sources import Shard, collect_items, share_key, share_of
from tests.conftest import PHOTO_FILES, SKIMAGE_DATA
from tests.pg import pg_server_url_fixture, pg_url_fixture  # noqa: F401
from tests.test_cli_process import clipbot_env
from tests.test_shared_gallery import as_url

# Twelve real, different pictures, in nested folders as a photo library would have them.
EXTRA = {"brick": SKIMAGE_DATA / "brick.png", "gravel": SKIMAGE_DATA / "gravel.png"}
LAYOUT = {"astronaut": "people", "grace_hopper": "people", "chelsea": "pets", "coffee": "kitchen",
          "rocket": "trips/2019", "motorcycle": "trips/2019", "hubble": "trips/2021/sky", "china": "trips/2021",
          "flower": "garden", "retina": "misc", "brick": "misc/textures", "gravel": "misc/textures"}


def photo_tree(root: Path) -> list[Path]:
    """The twelve pictures under ``root``; returns their paths."""
    files = []
    for name, src in {**PHOTO_FILES, **EXTRA}.items():
        folder = root / LAYOUT[name]
        folder.mkdir(parents=True, exist_ok=True)
        files.append(Path(shutil.copy(src, folder / src.name)))
    return sorted(files)


def relative(paths: list[Path], root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in paths}


KEYS = [f"{year}/{month:02d}/IMG_{n:04d}.jpg" for year in (2022, 2023) for month in range(1, 13) for n in range(200)]


def test_a_share_is_the_same_everywhere() -> None:
    # Pinned: a change here re-deals every file already split between machines. Python's own
    # hash() would fail this at random (it changes with PYTHONHASHSEED, i.e. from run to run).
    assert [share_of("a.jpg", n) for n in (2, 3, 7, 1000)] == [2, 1, 7, 450]
    assert [share_of("holiday/beach.jpg", n) for n in (2, 3, 7, 1000)] == [1, 2, 5, 87]
    assert [share_of("IMG_0001.JPG", n) for n in (2, 3, 7, 1000)] == [2, 2, 2, 702]
    # A name as macOS spells it (decomposed accents) is the name Linux spells composed.
    composed = "café/crème.png"
    assert share_of(unicodedata.normalize("NFD", composed), 7) == share_of(composed, 7) == 7
    # A name that is not UTF-8 (bytes smuggled as surrogates by os.fsdecode) still has a share.
    assert 1 <= share_of(b"caf\xe9.jpg".decode("utf-8", "surrogateescape"), 3) <= 3


@pytest.mark.parametrize("count", [1, 2, 3, 5, 8])
def test_shares_are_disjoint_cover_everything_and_are_balanced(count: int) -> None:
    owners = {key: [k for k in range(1, count + 1) if Shard(k, count).owns(key)] for key in KEYS}
    assert all(len(found) == 1 for found in owners.values())  # each file in exactly one share
    sizes = Counter(found[0] for found in owners.values())
    assert sorted(sizes) == list(range(1, count + 1))
    # As balanced as a fair die: every share within 4 standard deviations of its expected size.
    expected, spread = len(KEYS) / count, 4 * math.sqrt(len(KEYS) * (1 / count) * (1 - 1 / count))
    assert all(abs(size - expected) <= spread for size in sizes.values()), sizes


def test_the_key_is_the_path_below_the_argument(tmp_path: Path) -> None:
    assert share_key(tmp_path / "a" / "b.jpg", tmp_path) == "a/b.jpg"
    assert share_key(tmp_path / "b.jpg", tmp_path / "b.jpg") == "b.jpg"  # a file given by itself: its name
    # The same library mounted in two places is split the same way on both machines.
    one, two = tmp_path / "mnt" / "one" / "photos", tmp_path / "elsewhere" / "photos"
    photo_tree(one), photo_tree(two)
    for k in (1, 2):
        here = collect_items([one], shard=(k, 2))
        there = collect_items([two], shard=(k, 2))
        assert relative([i.path for i in here.items], one) == relative([i.path for i in there.items], two)


def test_collected_shares_are_disjoint_and_cover_the_walk(tmp_path: Path) -> None:
    files = photo_tree(tmp_path / "photos")
    shares = [collect_items([tmp_path / "photos"], shard=(k, 3)) for k in (1, 2, 3)]
    taken = [{i.path for i in s.items} for s in shares]
    assert sum(len(t) for t in taken) == len(files) and set().union(*taken) == set(files)
    assert all(s.found == len(files) and str(s.shard) == f"{k}/3" for k, s in enumerate(shares, start=1))
    # A file reached through two arguments is one file, in one share.
    both = [collect_items([tmp_path / "photos", tmp_path / "photos" / "trips"], shard=(k, 3)) for k in (1, 2, 3)]
    assert sorted(p for s in both for p in (i.path for i in s.items)) == files


@pytest.mark.parametrize(("number", "count"), [(0, 2), (3, 2), (1, 0), (-1, 2)])
def test_a_share_that_does_not_exist_is_refused(number: int, count: int) -> None:
    with pytest.raises(InputError):
        Shard(number, count)


@pytest.mark.parametrize(("spec", "message"), [
    ("0/2", "K must be between 1 and 2 (shares count from 1): '0/2'"),
    ("3/2", "K must be between 1 and 2 (shares count from 1): '3/2'"),
    ("1/0", "N, the number of shares, must be at least 1: '1/0'"),
    ("x", "not K/N (e.g. 1/2, the first of two shares): 'x'"),
    ("1/2/3", "not K/N"), ("½", "not K/N"), ("1.0/2", "not K/N"),
])
def test_the_command_line_says_what_is_wrong_with_a_shard(spec: str, message: str, tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["index", str(tmp_path), "--shard", spec]) == 2
    err = capsys.readouterr().err
    assert f"clipbot index: error: argument --shard: {message}" in err
    assert build_parser().parse_args(["index", str(tmp_path), "--shard", " 2/3 "]).shard == (2, 3)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    code = main(list(argv))
    return code, capsys.readouterr().out


def test_shards_in_turn_index_once_and_prune_only_their_own(cli_env: Path, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "photos"
    files = photo_tree(root)
    mine = {i.path for i in collect_items([root], shard=(1, 2)).items}
    code, out = run(capsys, "index", str(root), "--shard", "1/2")
    assert code == 0 and f"Shard 1/2: {len(mine)} of 12 files." in out and f"{len(mine)} new" in out
    code, out = run(capsys, "index", str(root), "--shard", "2/2")
    assert code == 0 and f"Shard 2/2: {12 - len(mine)} of 12 files." in out and f"{12 - len(mine)} new" in out
    code, out = run(capsys, "index", str(root), "--shard", "1/2")
    assert code == 0 and f"0 new, 0 changed, {len(mine)} unchanged" in out

    # One gone file in each share: a share's --prune removes its own, and leaves the other's to it.
    gone_mine = next(f for f in files if f in mine)
    gone_theirs = next(f for f in files if f not in mine)
    gone_mine.unlink()
    gone_theirs.unlink()
    code, out = run(capsys, "index", str(root), "--shard", "1/2", "--prune")
    assert code == 0 and "1 pruned" in out
    code, out = run(capsys, "list", "--json")
    assert gone_theirs.name in out and gone_mine.name not in out
    code, out = run(capsys, "index", str(root), "--shard", "2/2", "--prune")
    assert code == 0 and "1 pruned" in out
    code, out = run(capsys, "list", "--json")
    assert gone_theirs.name not in out and out.count('"id"') == 10


def test_two_shards_at_once_store_every_picture_once(pg_url: str, clip_dir: Path, tmp_path: Path) -> None:
    root = tmp_path / "library"
    files = photo_tree(root)
    url = as_url(pg_url)

    def start(spec: str, n: int) -> subprocess.Popen[str]:
        env = clipbot_env(clip_dir, CLIPBOT_DATABASE_URL=url, CLIPBOT_MEDIA_DIR=str(tmp_path / "media"),
                          CLIPBOT_DATA_DIR=str(tmp_path / f"machine{n}"))
        return subprocess.Popen([sys.executable, "-m", "bot", "index", str(root), "--shard", spec], cwd=tmp_path,
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    machines = [start("1/2", 1), start("2/2", 2)]  # both at once, as two machines would
    outputs = [m.communicate(timeout=300) for m in machines]
    assert [m.returncode for m in machines] == [0, 0], outputs
    with psycopg.connect(pg_url) as conn:
        rows = conn.execute("SELECT source_path, sha256 FROM images").fetchall()
    assert sorted(r[0] for r in rows) == [str(f.resolve()) for f in files]  # each file stored once
    assert len({r[1] for r in rows}) == len(files)
    shares = [{i.path.resolve() for i in collect_items([root], shard=(k, 2)).items} for k in (1, 2)]
    for (out, _), share, spec in zip(outputs, shares, ("1/2", "2/2"), strict=True):
        assert f"Shard {spec}: {len(share)} of 12 files." in out and f"{len(share)} new" in out

    again = start("1/2", 3)
    out, err = again.communicate(timeout=300)
    assert again.returncode == 0, err
    assert f"0 new, 0 changed, {len(shares[0])} unchanged" in out
    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM images").fetchone() == (12,)
