"""The seed notebook's six functions and its pickled database format."""

from __future__ import annotations

import os
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import core
from core.errors import InputError, PickleRefusedError
from core.models.clip import ClipEncoder
from core.seed.api import use_encoder
from core.seed.format import read_seed_database, safe_loads
from tests.conftest import recompressed

NAMES = ("chelsea", "rocket", "coffee", "astronaut")


@pytest.fixture(autouse=True)
def seed_uses_tiny_model(encoder: ClipEncoder) -> Iterator[None]:
    use_encoder(encoder)
    yield
    use_encoder(None)


@pytest.fixture
def database(tmp_path: Path, photos: dict[str, Path]) -> Path:
    path = tmp_path / "db.pkl"
    core.build_database(
        [photos[n] for n in NAMES],
        ["ginger cat on a rug", "rocket on the launch pad", "a cup of coffee", "astronaut portrait"],
        ["cat", "rocket", "coffee", "astronaut"],
        path,
    )
    return path


def test_encode_image(photos: dict[str, Path], encoder: ClipEncoder) -> None:
    vec = core.encode_image(photos["rocket"])
    assert vec.shape == (encoder.dim,) and vec.dtype == np.float32
    assert np.linalg.norm(vec) == pytest.approx(1.0, abs=1e-5)


def test_build_database_writes_the_seed_format(database: Path, photos: dict[str, Path]) -> None:
    with open(database, "rb") as fh:
        entries = pickle.load(fh)  # the plain notebook way still works on our files
    assert [set(e) for e in entries] == [{"path", "embedding", "description", "label"}] * 4
    assert entries[0]["path"] == str(photos["chelsea"]) and entries[0]["label"] == "cat"
    np.testing.assert_allclose(entries[1]["embedding"], core.encode_image(photos["rocket"]), atol=1e-5)


def test_build_database_needs_parallel_lists(tmp_path: Path, photos: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="one description and one label per image"):
        core.build_database([photos["rocket"]], [], ["rocket"], tmp_path / "x.pkl")
    assert not (tmp_path / "x.pkl").exists()


@pytest.mark.parametrize("as_list", [False, True])
def test_find_closest_match(database: Path, photos: dict[str, Path], tmp_path: Path, as_list: bool) -> None:
    query = tmp_path / "query.jpg"
    query.write_bytes(recompressed(photos["coffee"]))
    db = read_seed_database(database) if as_list else database
    entry, score = core.find_closest_match(query, db)
    assert entry["label"] == "coffee" and 0.9 < score <= 1.0 + 1e-6
    if as_list:
        assert entry is db[2]  # the caller's own dict comes back


def test_calculate_cosine_similarity_in_database_order(database: Path, photos: dict[str, Path]) -> None:
    scores = core.calculate_cosine_similarity(database, photos["rocket"])
    assert len(scores) == 4 and all(isinstance(s, float) for s in scores)
    assert int(np.argmax(scores)) == 1 and scores[1] == pytest.approx(1.0, abs=1e-5)
    entries = read_seed_database(database)
    q = core.encode_image(photos["rocket"])
    np.testing.assert_allclose(scores, [float(e["embedding"] @ q) for e in entries], atol=1e-5)


def test_unnormalised_seed_vectors_give_true_cosines(database: Path, photos: dict[str, Path]) -> None:
    entries = read_seed_database(database)
    for e in entries:
        e["embedding"] = e["embedding"] * 7.5  # the notebook stored raw CLIP features
    scores = core.calculate_cosine_similarity(entries, photos["rocket"])
    assert max(scores) == pytest.approx(1.0, abs=1e-5)


def test_find_image_by_description_or_label(database: Path) -> None:
    ranked = core.find_image_by_description_or_label("Rocket", database)
    assert ranked[0]["label"] == "rocket" and len(ranked) == 4
    ranked = core.find_image_by_description_or_label("cup", database)
    assert ranked[0]["label"] == "coffee"


def test_find_best_match(database: Path, photos: dict[str, Path]) -> None:
    label, score = core.find_best_match(database, photos["astronaut"], ["Cat", "Rocket", "Coffee", "Astronaut"])
    assert label == "Astronaut" and score == pytest.approx(1.0, abs=1e-5)
    with pytest.raises(InputError, match="one label per entry"):
        core.find_best_match(database, photos["astronaut"], ["only one"])


def test_empty_database(photos: dict[str, Path]) -> None:
    with pytest.raises(InputError, match="empty"):
        core.find_closest_match(photos["rocket"], [])
    assert core.find_image_by_description_or_label("cat", []) == []
    assert core.calculate_cosine_similarity([], photos["rocket"]) == []


class _Payload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.system, (f"touch {self.marker}",))


def test_malicious_pickle_is_refused_and_never_runs(tmp_path: Path, photos: dict[str, Path]) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps([{"path": "x", "embedding": _Payload(marker), "label": "", "description": ""}]))
    with pytest.raises(PickleRefusedError, match=r"posix\.system|nt\.system"):
        core.find_closest_match(photos["rocket"], evil)
    assert not marker.exists()


@pytest.mark.parametrize(
    "payload",
    [
        pickle.dumps({"not": "a list"}),
        pickle.dumps([{"path": "x", "embedding": "text", "label": "", "description": ""}]),
        b"\x80\x05garbage",
    ],
)
def test_malformed_pickles_are_refused(payload: bytes) -> None:
    with pytest.raises(PickleRefusedError):
        from core.seed.format import validate_entries

        validate_entries(safe_loads(payload))


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_every_pickle_protocol_of_plain_data_loads(protocol: int) -> None:
    data = [{"path": "a.jpg", "embedding": np.arange(8, dtype=np.float32), "label": "a", "description": "",
             "extra": {1, 2}, "n": np.float64(2.5), "ok": True, "none": None}]
    loaded = safe_loads(pickle.dumps(data, protocol=protocol))
    np.testing.assert_array_equal(loaded[0]["embedding"], data[0]["embedding"])
