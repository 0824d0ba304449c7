"""The index on a GPU: torch tensors on the device give the host path's ids, order and scores.

The tensor code path runs on "cpu" too (``tensors=True``), so every test here runs on a machine
without a GPU, and again on CUDA where one is present.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch

from core.errors import DimensionMismatchError
from core.storage import gallery_for
from core.storage.vector_index import VectorIndex, _TensorShelf, index_device

DEVICES = ["cpu", *(["cuda"] if torch.cuda.is_available() else [])]
TOLERANCE = {"fp16": 2e-3, "fp32": 1e-5}


def _pair(precision: str, device: str, dim: int = 32) -> tuple[VectorIndex, VectorIndex]:
    return VectorIndex(dim, precision), VectorIndex(dim, precision, device, tensors=True)


def _assert_same(got: list[tuple[int, float]], want: list[tuple[int, float]], device: str, precision: str) -> None:
    """On the CPU the very same kernel runs: identical. On a GPU the sums round differently (within
    fp16 tolerance), so only rows whose host scores are that close may trade places."""
    if device == "cpu":  # fp32: torch's and numpy's sgemv may differ in the last bit
        assert [i for i, _ in got] == [i for i, _ in want]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=0 if precision == "fp16" else 1e-6)
        return
    tol = TOLERANCE[precision]
    assert len(got) == len(want)
    np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=tol)
    host = dict(want)
    for (gid, _), (wid, wscore) in zip(got, want, strict=True):
        assert gid == wid or abs(host.get(gid, -9.0) - wscore) <= 2 * tol


def test_index_device_setting() -> None:
    assert index_device("cpu") == "cpu" and index_device("mps") == "cpu"
    assert index_device("cuda") == "cuda" and index_device("cuda:1") == "cuda:1"
    assert index_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert VectorIndex(4).tensors is False and VectorIndex(4, device="cuda").tensors is True


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_tensor_index_matches_host_index_through_changes(device: str, precision: str) -> None:
    rng = np.random.default_rng(11)
    host, dev = _pair(precision, device)
    live: list[int] = []
    next_id = 1
    for step in range(400):
        if step % 7 == 3 and live:  # remove
            victim = int(rng.choice(live))
            assert host.remove(victim) and dev.remove(victim)
            live.remove(victim)
        elif step % 11 == 5 and live:  # replace a vector, or move a row to another collection
            target = int(rng.choice(live))
            vec = rng.standard_normal((1, 32)).astype(np.float32)
            coll = ("a", "b", "c")[int(rng.integers(3))]
            host.add(coll, [target], vec)
            dev.add(coll, [target], vec)
        elif step % 53 == 20:  # a batch, bigger than the shelf has room for
            ids = list(range(next_id, next_id + 25))
            vecs = rng.standard_normal((25, 32)).astype(np.float32) * rng.uniform(0.5, 3)
            host.add("b", ids, vecs)
            dev.add("b", ids, vecs)
            live += ids
            next_id += 25
        else:
            coll = ("a", "b", "c")[step % 3]
            vec = rng.standard_normal((1, 32)).astype(np.float32) * rng.uniform(0.5, 3)
            host.add(coll, [next_id], vec)
            dev.add(coll, [next_id], vec)
            live.append(next_id)
            next_id += 1
        if step == 250:
            host.move_collection("c", "a", drop=live[:3])
            dev.move_collection("c", "a", drop=live[:3])
            live = live[3:]
    assert len(host) == len(dev) == len(live)
    for coll in ("a", "b", "c"):
        assert host.count(coll) == dev.count(coll)
    for query in rng.standard_normal((5, 32)).astype(np.float32):
        for colls in (["a"], ["b", "a"], ["a", "b", "c"], ["missing"]):
            for k in (1, 10, 1000):
                _assert_same(dev.search(query, colls, k), host.search(query, colls, k), device, precision)
            host_ids, host_scores = host.scores(query, colls)
            dev_ids, dev_scores = dev.scores(query, colls)
            assert dev_ids.tolist() == host_ids.tolist() and dev_scores.dtype == np.float32
            exact = device == "cpu" and precision == "fp16"  # the very same kernel
            np.testing.assert_allclose(dev_scores, host_scores, atol=0 if exact else TOLERANCE[precision])
    assert dev.nbytes() == host.nbytes()


@pytest.mark.parametrize("device", DEVICES)
def test_ties_are_ordered_by_row_like_the_host(device: str) -> None:
    rng = np.random.default_rng(5)
    base = rng.standard_normal((4, 16)).astype(np.float32)
    vectors = base[rng.integers(0, 4, 300)]  # many exact duplicates: equal scores
    host, dev = _pair("fp16", device, dim=16)
    for part, coll in ((slice(0, 150), "x"), (slice(150, 300), "y")):
        ids = np.arange(300)[part]
        host.add(coll, ids, vectors[part])
        dev.add(coll, ids, vectors[part])
    for victim in (3, 77, 160):
        host.remove(victim)
        dev.remove(victim)
    for k in (1, 5, 40, 299):
        want = host.search(base[0], ["y", "x"], k)
        got = dev.search(base[0], ["y", "x"], k)
        assert [i for i, _ in got] == [i for i, _ in want]
        np.testing.assert_allclose([s for _, s in got], [s for _, s in want], atol=2e-3)


@pytest.mark.parametrize("where", ["host", *DEVICES])
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_search_many_gives_each_row_what_search_gives_it(where: str, precision: str,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    """One matrix product for many queries (calibration's): each row gets :meth:`search`'s answer,
    to the bit in fp16 on the CPU, ties included; in slices when the scores would be many."""
    rng = np.random.default_rng(8)
    index = VectorIndex(16, precision) if where == "host" else VectorIndex(16, precision, where, tensors=True)
    base = rng.standard_normal((40, 16)).astype(np.float32)
    vectors = np.concatenate([base, base[rng.integers(0, 40, 60)]])  # 60 duplicates: exact ties
    index.add("x", np.arange(50), vectors[:50])
    index.add("y", np.arange(50, 100), vectors[50:])
    index.add("gone", [500], base[:1])
    index.remove(500)  # an empty matrix
    queries = np.concatenate([base[:5], 4 * rng.standard_normal((6, 16)), np.zeros((1, 16))]).astype(np.float32)
    monkeypatch.setattr("core.storage.vector_index.SCORE_BUDGET", 150)  # 1 to 3 queries a product
    for colls in (["x"], ["y", "x", "y"], ["gone"], ["gone", "y"], ["missing"], []):
        for k in (0, 1, 3, 50, 1000):
            many = index.search_many(queries, colls, k)
            assert len(many) == len(queries)
            for query, (ids, scores) in zip(queries, many, strict=True):
                assert ids.dtype == np.int64 and scores.dtype == np.float32
                got = list(zip(ids.tolist(), scores.tolist(), strict=True))
                # Within rounding elsewhere (_assert_same's GPU branch): BLAS's sgemm and sgemv
                # sum in other orders, so even two copies of a row score a bit apart in fp32.
                exact = where != "cuda" and precision == "fp16"
                _assert_same(got, index.search(query, colls, k), "cpu" if exact else "cuda", precision)
    assert index.search_many(np.zeros((0, 16), np.float32), ["x"], 5) == []
    with pytest.raises(DimensionMismatchError):
        index.search_many(np.ones((2, 15), np.float32), ["x"], 5)


@pytest.mark.parametrize("device", DEVICES)
def test_a_repeated_id_in_one_batch_keeps_its_last_vector(device: str) -> None:
    for index in _pair("fp32", device, dim=3):
        index.add("g", [1, 2, 1], np.array([[1, 0, 0], [0, 1, 0], [0, 0, 1]], np.float32))
        assert index.count("g") == 2 and len(index) == 2
        assert index.search(np.array([0, 0, 1], np.float32), ["g"], 5)[0] == (1, pytest.approx(1.0))


def _out_of_memory(*_: object) -> None:
    raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("when", ["first placement", "growth"])
def test_out_of_device_memory_moves_the_index_to_the_host(device: str, when: str, monkeypatch: pytest.MonkeyPatch,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    rng = np.random.default_rng(2)
    vectors = rng.standard_normal((60, 8)).astype(np.float32)
    host, dev = _pair("fp16", device, dim=8)
    host.add("g", np.arange(40), vectors[:40])
    host.add("h", [500], vectors[:1])
    if when == "growth":
        dev.add("g", np.arange(40), vectors[:40])
        dev.add("h", [500], vectors[:1])
    monkeypatch.setattr(_TensorShelf, "_grow", _out_of_memory)
    with caplog.at_level(logging.WARNING, logger="core.storage.vector_index"):
        if when == "first placement":
            dev.add("g", np.arange(40), vectors[:40])
            dev.add("h", [500], vectors[:1])
        else:
            dev.add("g", [40], vectors[40:41])
            host.add("g", [40], vectors[40:41])
        for i in range(41, 60):  # later growth happens on the host: no second warning
            dev.add("g", [i], vectors[i:i + 1])
            host.add("g", [i], vectors[i:i + 1])
    warnings = [r for r in caplog.records if "out of memory" in r.getMessage()]
    assert len(warnings) == 1 and "on the CPU instead" in warnings[0].getMessage()
    assert dev.device == "cpu" and not dev.tensors
    assert len(dev) == len(host) and dev.count("g") == host.count("g") and dev.count("h") == host.count("h") == 1
    for query in vectors[:5]:
        for colls in (["g"], ["g", "h"]):
            assert dev.search(query, colls, 10) == host.search(query, colls, 10)


@pytest.mark.parametrize("device", DEVICES)
async def test_sqlite_builds_its_index_on_the_encoders_device(tmp_path: Path, device: str) -> None:
    gallery = gallery_for(None, tmp_path, index_device=device)
    await gallery.open()
    try:
        await gallery.prepare_search("m", 4)
        index = gallery._indexes["m"]  # type: ignore[attr-defined]
        assert index.device == device and index.tensors == (device != "cpu")
    finally:
        await gallery.close()
    plain = gallery_for(None, tmp_path / "other")
    assert plain.index_device == "cpu"  # type: ignore[attr-defined]
