"""What only the PostgreSQL backend has: its HNSW index, a server that goes away and comes back,
several processes at once, and copying a SQLite gallery into it (the shared contract is in
test_storage_contract.py)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import psycopg
import pytest

from core.errors import StorageUnavailableError, StoreError
from core.records import NewImage
from core.storage.migrate import copy_gallery
from core.storage.postgres import PostgresGallery
from core.storage.postgres_schema import SCHEMA_VERSION as PG_SCHEMA_VERSION
from core.storage.postgres_schema import mask_password
from tests.pg import (  # noqa: F401
    create_database,
    pg_server_url_fixture,
    pg_url_fixture,
    restart_server,
    start_server,
    stop_server,
    with_database,
)

MODEL = "test/clip"


def image(n: int, collection: str = "global", **kw: Any) -> NewImage:
    fields: dict[str, Any] = {"collection": collection, "label": f"label {n}", "description": f"description {n}",
                              "sha256": f"{n:064x}", "width": 10, "height": 10, "file": f"{n}.jpg"}
    fields.update(kw)
    return NewImage(**fields)


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


@pytest.fixture
async def gallery(pg_url: str) -> AsyncIterator[PostgresGallery]:
    g = PostgresGallery(pg_url)
    await g.open()
    try:
        yield g
    finally:
        await g.close()


async def bulk(g: PostgresGallery, vectors: np.ndarray, families: list[str] | None = None,
               collections: tuple[str, ...] = ("global",)) -> list[int]:
    """Rows straight into the tables (one COPY), for tests that need a few thousand."""
    async with g._conn() as conn:
        await conn.execute("INSERT INTO collections(name) SELECT unnest(%s::text[]) ON CONFLICT DO NOTHING",
                           (list(collections),))
        cur = conn.cursor()
        async with cur.copy("COPY images(collection, sha256, color_families) FROM STDIN") as copy:
            for n in range(len(vectors)):
                await copy.write_row((collections[n % len(collections)], f"{n:064x}",
                                      families[n] if families else ""))
        ids = [int(r[0]) for r in await (await conn.execute("SELECT id FROM images ORDER BY id")).fetchall()]
        async with cur.copy("COPY embeddings(image_id, model_id, dim, vector) FROM STDIN") as copy:
            for image_id, vec in zip(ids, vectors, strict=True):
                await copy.write_row((image_id, MODEL, len(vec), "[" + ",".join(map(repr, vec.tolist())) + "]"))
        await conn.execute("ANALYZE")
    return ids


async def plan(g: PostgresGallery, query: Any, params: dict[str, Any]) -> str:
    async with g._conn() as conn:
        rows = await (await conn.execute(b"EXPLAIN " + query.as_bytes(conn), params)).fetchall()
    return "\n".join(str(r[0]) for r in rows)


# -- naming the database ------------------------------------------------------------------------


def test_the_location_never_shows_the_password() -> None:
    assert mask_password("postgresql://clip:s3cret@db.example:5432/gallery?sslmode=require") == \
        "postgresql://clip:***@db.example:5432/gallery?sslmode=require"
    assert mask_password("postgres://clip@db/gallery") == "postgres://clip@db/gallery"
    assert mask_password("postgresql://db/gallery?user=clip&password=s3cret") == \
        "postgresql://db/gallery?user=clip&password=***"
    assert mask_password("host=db password=s3cret dbname=gallery") == "host=db password=*** dbname=gallery"
    assert "s3cret" not in PostgresGallery("postgresql://clip:s3cret@db/gallery").location


async def test_an_unusable_url_gives_one_line_naming_the_setting(pg_server_url: str, tmp_path: Path) -> None:
    urls = [
        "postgresql://clip:s3cret@127.0.0.1:1/gallery",  # nothing listens
        f"postgresql://clip:s3cret@/gallery?host={tmp_path}",  # no server's socket there
        "postgresql://clip:s3cret@db:notaport/gallery",  # not even a URL libpq takes
        psycopg.conninfo.make_conninfo(with_database(pg_server_url, "no_such_database"), password="s3cret"),
    ]
    for url in urls:
        g = PostgresGallery(url, timeout=2)
        with pytest.raises(StoreError) as caught:
            await g.open()
        message = str(caught.value)
        assert "CLIPBOT_DATABASE_URL" in message, message
        assert "\n" not in message and "s3cret" not in message and "Traceback" not in message, message
        assert caught.value.__cause__ is None and caught.value.__suppress_context__
        await g.close()  # after a failed open: nothing to do, no error


# -- schema ----------------------------------------------------------------------------------------


async def test_processes_opening_an_empty_database_at_once_migrate_it_once(pg_url: str) -> None:
    galleries = [PostgresGallery(pg_url) for _ in range(4)]
    await asyncio.gather(*(g.open() for g in galleries))
    try:
        assert [await g.schema_version() for g in galleries] == [PG_SCHEMA_VERSION] * 4
        with psycopg.connect(pg_url) as conn:
            versions = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
            assert versions == [(v,) for v in range(1, PG_SCHEMA_VERSION + 1)]  # each step once
            assert conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'vector'").fetchone() == (1,)
        await galleries[0].insert_image(image(1), np.ones(4, np.float32), MODEL)
        assert await galleries[3].collection_counts() == {"global": 1}
    finally:
        await asyncio.gather(*(g.close() for g in galleries))


async def test_integrity_check_reports_vectors_that_disagree_with_their_dimension(
        gallery: PostgresGallery, pg_url: str) -> None:
    await gallery.insert_image(image(1), np.ones(4, np.float32), MODEL)
    assert await gallery.integrity_check() == ["ok"]
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute("UPDATE embeddings SET dim = 3")
    assert await gallery.integrity_check() == ["1 vector(s) whose length is not their recorded dimension"]


# -- the index ------------------------------------------------------------------------------------


async def test_search_uses_the_hnsw_index(gallery: PostgresGallery, pg_url: str) -> None:
    rng = np.random.default_rng(0)
    vectors = unit(rng, 3000, 16)
    await bulk(gallery, vectors, [" red " if n % 4 == 0 else " blue " for n in range(3000)], ("global", "chat"))
    await gallery.prepare_search(MODEL, 16)
    await gallery.prepare_search(MODEL, 16)
    other = PostgresGallery(pg_url)  # another process finds the index there, builds none
    await other.open()
    await other.prepare_search(MODEL, 16)
    await other.close()
    with psycopg.connect(pg_url) as conn:
        indexes = conn.execute("SELECT indexdef FROM pg_indexes WHERE indexname LIKE 'embeddings_hnsw_%'").fetchall()
    assert len(indexes) == 1
    assert "USING hnsw" in indexes[0][0] and "vector_cosine_ops" in indexes[0][0] and MODEL in indexes[0][0]

    for kw in ({}, {"color_families": ["red"]}):
        query, params = gallery.search_query(MODEL, 16, vectors[0], ["global", "chat"], 10, exact=False, **kw)
        explained = await plan(gallery, query, params)
        assert f"Index Scan using {gallery.index_name(MODEL, 16)}" in explained, explained
    query, params = gallery.search_query(MODEL, 16, vectors[0], ["global"], 10, exact=True)
    assert "hnsw" not in await plan(gallery, query, params)  # the fallback scans

    # recall@10 against exact search, through nearest()
    queries = unit(rng, 40, 16)
    found = 0
    for q in queries:
        hits = await gallery.nearest(q, model_id=MODEL, collections=["global", "chat"], k=10)
        truth = np.argsort(-(vectors @ q), kind="stable")[:10] + 1  # ids are 1..n in insertion order
        found += len(set(hits.ids.tolist()) & set(truth.tolist()))
    assert found / (10 * len(queries)) >= 0.95


async def test_processes_preparing_search_at_once_build_one_index(gallery: PostgresGallery, pg_url: str) -> None:
    """Builds run CONCURRENTLY (writes go on): the second builder must wait without deadlocking."""
    rng = np.random.default_rng(4)
    await bulk(gallery, unit(rng, 3000, 16))
    others = [PostgresGallery(pg_url) for _ in range(2)]
    await asyncio.gather(*(g.open() for g in others))
    try:
        writes = [g.insert_image(image(10_000 + n), unit(rng, 1, 16)[0], MODEL) for n, g in enumerate(others)]
        await asyncio.gather(*(g.prepare_search(MODEL, 16) for g in [gallery, *others]), *writes)
        with psycopg.connect(pg_url) as conn:
            assert conn.execute("SELECT x.indisvalid FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid"
                                " WHERE c.relname LIKE 'embeddings_hnsw_%'").fetchall() == [(True,)]
        hits = await others[1].nearest(unit(rng, 1, 16)[0], model_id=MODEL, collections=["global"], k=10)
        assert len(hits) == 10
    finally:
        await asyncio.gather(*(g.close() for g in others))


async def test_nearest_many_walks_the_graph_once_and_scans_only_the_short_walks(gallery: PostgresGallery) -> None:
    rng = np.random.default_rng(5)
    vectors = unit(rng, 3000, 16)
    ids = await bulk(gallery, vectors, collections=("rare", *["global"] * 99))  # 1% of the rows are "rare"
    await gallery.prepare_search(MODEL, 16)
    queries = np.concatenate([vectors[[0, 100, 200]], unit(rng, 10, 16)])  # rare rows find themselves first
    query, params = gallery.search_query(MODEL, 16, queries, ["rare"], 1, exact=False, many=True)
    assert f"Index Scan using {gallery.index_name(MODEL, 16)}" in await plan(gallery, query, params)

    gallery.ef_search = 40  # a walk meets 40 rows, a few of them "rare", often none
    async with gallery._conn() as conn:
        walked = {int(n) for n, _, _ in await gallery._walk(conn, 1, query, params)}
    assert {1, 2, 3} <= walked and len(walked) < len(queries)  # some walks come back short: those scan
    many = await gallery.nearest_many(queries, model_id=MODEL, collections=["rare"], k=1)
    for q, got in zip(queries, many, strict=True):
        one = await gallery.nearest(q, model_id=MODEL, collections=["rare"], k=1)
        assert got.ids.tolist() == one.ids.tolist() and np.allclose(got.scores, one.scores, atol=1e-6)
    assert [m.ids.tolist() for m in many[:3]] == [[ids[0]], [ids[100]], [ids[200]]]
    rare = np.arange(0, 3000, 100)
    assert [m.ids.tolist() for m in many[3:]] == [[ids[rare[np.argmax(vectors[rare] @ q)]]] for q in queries[3:]]

    async with gallery._conn() as conn:  # a walk that fails leaves no transaction and no setting behind
        with pytest.raises(psycopg.errors.DivisionByZero):
            await gallery._walk(conn, 1, psycopg.sql.SQL("SELECT 1 / 0"), {})
        assert conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        assert await (await conn.execute("SHOW enable_sort")).fetchone() == ("on",)


async def test_a_selective_filter_falls_back_to_an_exact_scan(gallery: PostgresGallery) -> None:
    rng = np.random.default_rng(1)
    vectors = unit(rng, 3000, 16)
    query = unit(rng, 1, 16)[0]
    farthest = np.argsort(vectors @ query)[:5]  # the 5 least similar: no graph walk from the query meets them
    families = [" red " if n in farthest else " blue " for n in range(3000)]
    ids = await bulk(gallery, vectors, families)
    await gallery.prepare_search(MODEL, 16)

    index_query, params = gallery.search_query(MODEL, 16, query, ["global"], 5, ["red"], exact=False)
    assert "Index Scan using" in await plan(gallery, index_query, params)
    async with gallery._conn() as conn, conn.transaction():
        await conn.execute("SET LOCAL hnsw.ef_search = 100")
        walked = await (await conn.execute(index_query, params)).fetchall()
    assert len(walked) < 5  # what HNSW alone would answer

    hits = await gallery.nearest(query, model_id=MODEL, collections=["global"], k=5, color_families=["red"])
    expected = sorted(farthest.tolist(), key=lambda n: -float(vectors[n] @ query))
    assert hits.ids.tolist() == [ids[n] for n in expected]
    assert np.allclose(hits.scores, [vectors[n] @ query for n in expected], atol=1e-5)



# -- bulk loads ------------------------------------------------------------------------------------


def index_state(pg_url: str, name: str) -> bool | None:
    """Whether the index is there and valid (None: absent), as pg_indexes and pg_index say."""
    with psycopg.connect(pg_url, autocommit=True) as conn:
        row = conn.execute("SELECT x.indisvalid FROM pg_indexes i JOIN pg_index x ON x.indexrelid = to_regclass("
                           "i.indexname) WHERE i.indexname = %s", (name,)).fetchone()
    return None if row is None else bool(row[0])


def top(vectors: np.ndarray, ids: list[int], q: np.ndarray, k: int) -> list[int]:
    return [ids[n] for n in np.argsort(-(vectors @ q), kind="stable")[:k]]


async def test_a_bulk_load_drops_the_index_and_builds_it_after_while_searches_stay_exact(
        gallery: PostgresGallery, pg_url: str) -> None:
    rng = np.random.default_rng(6)
    vectors = unit(rng, 6000, 16)
    ids = await bulk(gallery, vectors[:3000])
    await gallery.prepare_search(MODEL, 16)
    name = gallery.index_name(MODEL, 16)
    other, late = PostgresGallery(pg_url), PostgresGallery(pg_url)  # other processes serving the gallery
    await asyncio.gather(other.open(), late.open())
    try:
        await other.prepare_search(MODEL, 16)
        queries = unit(rng, 8, 16)
        async with gallery.bulk_load(MODEL, 16, 3000):
            assert index_state(pg_url, name) is None
            for start in range(3000, 6000, 500):
                done = await gallery.insert_images([image(n) for n in range(start, start + 500)],
                                                   vectors[start:start + 500], MODEL)
                ids += [held.id for held, _ in done]
            await late.prepare_search(MODEL, 16)  # a process starting meanwhile builds nothing
            assert index_state(pg_url, name) is None
            for g in (gallery, other, late):  # every search is exact meanwhile, right to the last place
                query, params = g.search_query(MODEL, 16, queries[0], ["global"], 10, exact=False)
                async with g._conn() as conn:
                    assert await g._walk(conn, 10, query, params) == []  # the walk sees no index
                for q in queries:
                    hits = await g.nearest(q, model_id=MODEL, collections=["global"], k=10)
                    assert hits.ids.tolist() == top(vectors, ids, q, 10)
                    assert np.allclose(hits.scores, np.sort(vectors @ q)[::-1][:10], atol=1e-5)
                many = await g.nearest_many(queries, model_id=MODEL, collections=["global"], k=5)
                assert [m.ids.tolist() for m in many] == [top(vectors, ids, q, 5) for q in queries]
        assert index_state(pg_url, name) is True
        for g in (gallery, other, late):  # and the graph is walked again, over every row
            query, params = g.search_query(MODEL, 16, queries[0], ["global"], 10, exact=False)
            assert f"Index Scan using {name}" in await plan(g, query, params)
            async with g._conn() as conn:
                assert len(await g._walk(conn, 10, query, params)) == 10
            found = 0
            for q in queries:
                hits = await g.nearest(q, model_id=MODEL, collections=["global"], k=10)
                found += len(set(hits.ids.tolist()) & set(top(vectors, ids, q, 10)))
            assert found / (10 * len(queries)) >= 0.9
    finally:
        await asyncio.gather(other.close(), late.close())


async def test_a_small_load_keeps_the_index(gallery: PostgresGallery, pg_url: str) -> None:
    rng = np.random.default_rng(7)
    await bulk(gallery, unit(rng, 3000, 16))
    await gallery.prepare_search(MODEL, 16)
    async with gallery.bulk_load(MODEL, 16, 500):  # a sixth of what is there: into the live index
        assert index_state(pg_url, gallery.index_name(MODEL, 16)) is True
        await gallery.insert_images([image(n) for n in range(3000, 3500)], unit(rng, 500, 16), MODEL)
    assert index_state(pg_url, gallery.index_name(MODEL, 16)) is True


async def test_of_two_loads_at_once_the_last_one_out_builds_the_index(gallery: PostgresGallery, pg_url: str) -> None:
    rng = np.random.default_rng(8)
    await bulk(gallery, unit(rng, 100, 16))
    await gallery.prepare_search(MODEL, 16)
    name = gallery.index_name(MODEL, 16)
    other = PostgresGallery(pg_url)
    await other.open()
    try:
        first = gallery.bulk_load(MODEL, 16, 5000)
        await first.__aenter__()
        with pytest.raises(RuntimeError):  # the second load fails half way: the index comes back all the same
            async with other.bulk_load(MODEL, 16, 5000):
                assert index_state(pg_url, name) is None
                await other.insert_images([image(n) for n in range(100, 200)], unit(rng, 100, 16), MODEL)
                await first.__aexit__(None, None, None)  # the first one leaves: the other one still loads
                assert index_state(pg_url, name) is None
                raise RuntimeError("the load broke down")
        assert index_state(pg_url, name) is True
        hits = await gallery.nearest(unit(rng, 1, 16)[0], model_id=MODEL, collections=["global"], k=5)
        assert len(hits) == 5
    finally:
        await other.close()


# -- several processes ----------------------------------------------------------------------------


async def test_two_processes_adding_the_same_pictures_store_each_once(pg_url: str) -> None:
    a, b = PostgresGallery(pg_url, max_size=4), PostgresGallery(pg_url, max_size=4)
    await asyncio.gather(a.open(), b.open())
    try:
        rng = np.random.default_rng(2)
        vectors = unit(rng, 50, 8)
        order_a, order_b = list(range(50)), list(reversed(range(50)))
        results = await asyncio.gather(
            *(a.insert_image(image(n), vectors[n], MODEL) for n in order_a),
            *(b.insert_image(image(n), vectors[n], MODEL) for n in order_b),
        )
        assert sum(created for _, created in results) == 50
        by_sha: dict[int, set[int]] = {}
        for n, (image_id, _) in zip(order_a + order_b, results, strict=True):
            by_sha.setdefault(n, set()).add(image_id)
        assert all(len(ids) == 1 for ids in by_sha.values())  # both processes got the same id
        assert await a.collection_counts() == {"global": 50}
        assert await b.embedding_counts() == {MODEL: 50}
    finally:
        await asyncio.gather(a.close(), b.close())


# -- a server that goes away ------------------------------------------------------------------------


@pytest.fixture
def private_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """A PostgreSQL of this test's own, to stop and start again."""
    server = start_server(tmp_path_factory.mktemp("pg") / "data")
    try:
        yield server
    finally:
        server.cleanup()


async def test_a_server_restart_needs_no_clipbot_restart(private_server: Any) -> None:
    url = with_database(private_server.get_uri(), create_database(private_server.get_uri()))
    g = PostgresGallery(url, timeout=1)
    await g.open()
    try:
        vec = np.ones(4, np.float32)
        first, _ = await g.insert_image(image(1), vec, MODEL)
        await g.prepare_search(MODEL, 4)
        await asyncio.to_thread(stop_server, private_server)

        with pytest.raises(StorageUnavailableError) as caught:
            await g.collection_counts()
        assert "can't store anything right now" in str(caught.value)
        assert caught.value.where == g.location
        with pytest.raises(StorageUnavailableError):
            await g.insert_image(image(2), vec, MODEL)
        with pytest.raises(StorageUnavailableError):
            await g.nearest(vec, model_id=MODEL, collections=["global"], k=5)
        with pytest.raises(StorageUnavailableError):
            await g.update_state("limits", "u", lambda old: ("1", None))

        await asyncio.to_thread(restart_server, private_server)
        assert await g.collection_counts() == {"global": 1}  # the failed writes left nothing behind
        assert await g.get_state("limits", "u") is None
        second, created = await g.insert_image(image(2), vec, MODEL)
        assert created and second != first
        hits = await g.nearest(vec, model_id=MODEL, collections=["global"], k=5)
        assert sorted(hits.ids.tolist()) == [first, second]
    finally:
        await g.close()


# -- copying a SQLite gallery in ------------------------------------------------------------------


async def test_copy_from_sqlite_resumes_after_an_interruption(gallery: PostgresGallery, tmp_path: Path) -> None:
    try:
        from core.storage.sqlite import SqliteGallery
    except ImportError:
        pytest.skip("core.storage.sqlite is not there yet")
    rng = np.random.default_rng(3)
    source = SqliteGallery(tmp_path / "sqlite")
    await source.open()
    try:
        for n in range(30):
            new = image(n, "global" if n % 3 else "telegram:5", caption=f"caption {n}", added_by="u",
                        colors='[{"hex": "#ff0000", "name": "red", "percent": 60.0}]', color_families=" red ",
                        source_path=f"/p/{n}.jpg", source_size=n * 100, source_mtime_ns=n * 10**15)
            image_id, _ = await source.insert_image(new, unit(rng, 1, 16)[0], MODEL)
            if n % 2:
                await source.set_vector(image_id, unit(rng, 1, 8)[0], "old/model")
        only_old, _ = await source.insert_image(image(99), unit(rng, 1, 8)[0], "old/model")
        # one image the target already has (with one of its two vectors), after the interruption
        late = await source.find_by_sha256("telegram:5", image(21).sha256)
        assert late is not None
        await gallery.insert_image(image(21, "telegram:5"), (await source.vectors_for([late.id], MODEL))[late.id],
                                   MODEL)

        def stop_after(n: int) -> Any:
            def progress(done: int) -> None:
                if done == n:
                    raise KeyboardInterrupt

            return progress

        with pytest.raises(KeyboardInterrupt):
            await copy_gallery(source, gallery, progress=stop_after(12), batch=5)
        # The batch that holds the 12th image was stored whole: 15 images, and the one made by hand.
        assert sum((await gallery.collection_counts()).values()) == 16

        report = await copy_gallery(source, gallery, batch=7)
        assert report.matches, report
        assert (report.copied, report.skipped, report.vectors_added) == (15, 16, 1)
        assert report.collections == {"global": (21, 21), "telegram:5": (10, 10)}
        assert report.vectors == {MODEL: (30, 30), "old/model": (16, 16)}
        assert report.without_vector == []

        for record in await source.list_images():
            copy = await gallery.find_by_sha256(record.collection, record.sha256)
            assert copy is not None
            if record.id != late.id:  # made by hand above, from fewer fields
                assert replace(record, id=0, created_at="") == replace(copy, id=0, created_at="")
            for model in (MODEL, "old/model"):
                mine = list((await source.vectors_for([record.id], model)).values())
                theirs = list((await gallery.vectors_for([copy.id], model)).values())
                assert [v.tobytes() for v in mine] == [v.tobytes() for v in theirs]
        assert await gallery.find_by_sha256("global", image(99).sha256) is not None  # its only vector: old/model
        assert only_old

        again = await copy_gallery(source, gallery)
        assert (again.copied, again.skipped, again.vectors_added, again.matches) == (0, 31, 0, True)
    finally:
        await source.close()
