"""Re-indexing keeps the gallery equal to the folder: unchanged files skipped undecoded, edits
replace their entry, deleted files pruned, NAS clutter excluded (the CLI, in-process)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from bot.composition import build_engine
from bot.settings import Settings
from core.gallery.ingest import IngestItem, ingest
from core.models.clip import ClipEncoder
from tests.conftest import labelled_folder
from tests.fakes import RecordingEncoder
from tests.test_cli import image_count, run

PICK = ("chelsea", "rocket", "coffee", "astronaut")


@pytest.fixture
def folder(tmp_path: Path, photos: dict[str, Path]) -> Path:
    return labelled_folder(tmp_path / "photos", {name: photos[name] for name in PICK})


def listing(capsys: pytest.CaptureFixture[str], *extra: str) -> list[dict[str, object]]:
    code, out, err = run(capsys, "list", "--json", *extra)
    assert code == 0, err
    images: list[dict[str, object]] = json.loads(out)["images"]
    return images


def test_unchanged_folder_is_not_decoded_or_encoded(cli_env: Path, folder: Path,
                                                     capsys: pytest.CaptureFixture[str],
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    import core.gallery.batch_decode as batch_module
    import core.gallery.engine as engine_module

    assert run(capsys, "index", str(folder), "--labels-from-folders")[0] == 0
    decoded: list[object] = []
    real_decode = engine_module.decode_image
    for module in (engine_module, batch_module):  # one file at a time, and indexing's batches
        monkeypatch.setattr(module, "decode_image", lambda src, **kw: decoded.append(src) or real_decode(src, **kw))
    code, out, _ = run(capsys, "index", str(folder), "--labels-from-folders")
    assert code == 0 and "0 new, 0 changed, 4 unchanged, 0 pruned, 0 skipped" in out
    assert decoded == []  # path, size and mtime unchanged: the files were not even opened


async def test_unchanged_run_never_loads_the_model(settings: Settings, encoder: ClipEncoder, folder: Path) -> None:
    items = [IngestItem(p, label=p.parent.name) for p in sorted(folder.rglob("*.*"))]
    async with build_engine(settings, encoder) as engine:
        await ingest(engine, items, collection="global")
    recording = RecordingEncoder(encoder)
    async with build_engine(settings, recording) as engine:  # type: ignore[arg-type]
        summary = await ingest(engine, items, collection="global")
    assert (summary.added, summary.changed, summary.unchanged) == (0, 0, 4)
    assert recording.spans == []


def test_file_edited_in_place_keeps_its_entry(cli_env: Path, folder: Path, photos: dict[str, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "index", str(folder), "--labels-from-folders")
    before = {img["label"]: img for img in listing(capsys)}
    cat = folder / "chelsea" / photos["chelsea"].name
    old_picture = Path(str(before["chelsea"]["path"]))
    cat.write_bytes(photos["flower"].read_bytes())  # edited: same path, other picture
    code, out, _ = run(capsys, "index", str(folder))
    assert code == 0 and "0 new, 1 changed, 3 unchanged" in out
    after = {img["label"]: img for img in listing(capsys)}
    assert after["chelsea"]["id"] == before["chelsea"]["id"] and len(after) == 4  # same id and label, no new entry
    assert after["chelsea"]["source_path"] == str(cat.resolve())
    code, out, _ = run(capsys, "search", str(photos["flower"]), "-k", "1", "--json")
    [hit] = json.loads(out)["results"]
    assert hit["id"] == before["chelsea"]["id"] and hit["score"] > 0.99
    assert not old_picture.exists()  # the old picture's stored copy went with it
    assert image_count(cli_env) == 4


def test_touched_file_is_unchanged(cli_env: Path, folder: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "index", str(folder))
    target = next(folder.rglob("*.png"))
    os.utime(target, ns=(10**18, 10**18))
    _, out, _ = run(capsys, "index", str(folder))
    assert "0 new, 0 changed, 4 unchanged" in out
    _, out, _ = run(capsys, "index", str(folder))  # its new mtime was recorded
    assert "4 unchanged" in out and image_count(cli_env) == 4


def test_prune_removes_deleted_files_and_folders(cli_env: Path, folder: Path, photos: dict[str, Path],
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    other = labelled_folder(folder.parent / "other", {"hubble": photos["hubble"]})
    run(capsys, "index", str(folder), "--labels-from-folders")
    run(capsys, "index", str(other), "--labels-from-folders")
    shutil.rmtree(folder / "rocket")
    (folder / "coffee" / photos["coffee"].name).unlink()
    _, out, _ = run(capsys, "index", str(folder))  # without --prune, nothing is removed
    assert "2 unchanged, 0 pruned" in out and image_count(cli_env) == 5
    code, out, _ = run(capsys, "index", str(folder), "--prune")
    assert code == 0 and "0 new, 0 changed, 2 unchanged, 2 pruned" in out
    assert sorted(str(img["label"]) for img in listing(capsys)) == ["astronaut", "chelsea", "hubble"]
    code, out, _ = run(capsys, "find", "rocket", "--json")
    assert "rocket" not in {r["label"] for r in json.loads(out)["results"]}
    shutil.rmtree(folder)  # a whole indexed folder deleted: sync empties it from the gallery
    code, out, _ = run(capsys, "sync", str(folder))
    assert code == 0 and "2 pruned" in out
    assert [img["label"] for img in listing(capsys)] == ["hubble"]  # the other folder's entry stays


def test_sync_of_a_mistyped_folder_changes_nothing(cli_env: Path, folder: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "index", str(folder))
    code, _, err = run(capsys, "sync", str(folder.parent / "photoz"))
    assert code == 1 and "No such file or folder" in err and image_count(cli_env) == 4


def test_moved_file_is_a_change_not_a_duplicate(cli_env: Path, folder: Path, photos: dict[str, Path],
                                                capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "index", str(folder))
    old = folder / "rocket" / photos["rocket"].name
    new = folder / "rocket" / "renamed.jpg"
    old.rename(new)
    _, out, _ = run(capsys, "sync", str(folder))
    assert "0 new, 1 changed, 3 unchanged, 0 pruned" in out and image_count(cli_env) == 4
    assert str(new.resolve()) in {img["source_path"] for img in listing(capsys)}
    _, out, _ = run(capsys, "sync", str(folder))
    assert "0 new, 0 changed, 4 unchanged, 0 pruned" in out


def test_duplicate_files_stay_one_entry_across_runs(cli_env: Path, folder: Path, photos: dict[str, Path],
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    shutil.copy(photos["rocket"], folder / "copy.jpg")
    run(capsys, "index", str(folder))
    for _ in range(2):
        _, out, _ = run(capsys, "sync", str(folder))
        assert "0 new, 0 changed, 4 unchanged, 0 pruned, 1 skipped" in out and "same picture as" in out
    assert image_count(cli_env) == 4


def test_default_and_custom_exclusions(cli_env: Path, folder: Path, photos: dict[str, Path],
                                       capsys: pytest.CaptureFixture[str]) -> None:
    for clutter, photo in (("@eaDir", "hubble"), ("#recycle", "china"), (".git", "flower"),
                           ("node_modules", "grace_hopper")):
        (folder / clutter).mkdir()
        shutil.copy(photos[photo], folder / clutter / "thumb.jpg")
    (folder / "raw").mkdir()
    shutil.copy(photos["retina"], folder / "raw" / "x.jpg")
    _, out, _ = run(capsys, "index", str(folder), "--labels-from-folders", "--exclude", "raw")
    assert "4 new" in out and "@eaDir" not in {img["label"] for img in listing(capsys)}
    run(capsys, "index", str(folder), "--labels-from-folders", "--no-default-excludes")
    labels = {str(img["label"]) for img in listing(capsys)}
    assert {"@eaDir", "#recycle", ".git", "node_modules", "raw"} <= labels  # the defaults can be switched off


def test_labels_csv_reports_bad_rows_and_indexes_the_rest(cli_env: Path, tmp_path: Path, photos: dict[str, Path],
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(f"path,label,description\n{photos['coffee']},coffee,a cup\n"
                        f"{tmp_path / 'gone.jpg'},gone,\n,no path,\n{photos['rocket']},rocket,\n")
    code, out, err = run(capsys, "index", "--labels-csv", str(csv_file))
    assert code == 0 and "2 new" in out and "2 skipped" in out
    assert "row 3: no such file" in err and "row 4: no path" in err
    assert sorted(str(img["label"]) for img in listing(capsys)) == ["coffee", "rocket"]


def test_remove_takes_several_ids_and_checks_them_all_first(cli_env: Path, folder: Path,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "index", str(folder))
    ids = [str(img["id"]) for img in listing(capsys)]
    code, _, err = run(capsys, "remove", ids[0], "999")
    assert code == 1 and "#999" in err and image_count(cli_env) == 4  # nothing removed
    code, out, _ = run(capsys, "remove", ids[0], ids[1])
    assert code == 0 and out.count("Removed") == 2 and image_count(cli_env) == 2


def test_unknown_collection_lists_those_that_exist(cli_env: Path, folder: Path, photos: dict[str, Path],
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "index", str(folder))
    run(capsys, "index", str(photos["hubble"]), "--collection", "space")
    for argv in (["find", "cat", "--collection", "nope"], ["search", str(photos["rocket"]), "--collection", "nope"],
                 ["list", "--collection", "nope"]):
        code, out, err = run(capsys, *argv)
        assert code == 1 and out == "" and "'nope'" in err and "global (4)" in err and "space (1)" in err


def test_results_show_the_operators_own_paths(cli_env: Path, folder: Path, photos: dict[str, Path],
                                              capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "index", str(folder), "--labels-from-folders")
    rocket = (folder / "rocket" / photos["rocket"].name).resolve()
    code, out, _ = run(capsys, "search", str(photos["rocket"]), "-k", "1")
    assert str(rocket) in out and "media" not in out
    code, out, _ = run(capsys, "search", str(photos["rocket"]), "-k", "3", "-f")
    lines = out.splitlines()
    assert code == 0 and lines[0] == str(rocket) and len(lines) == 3 and all(Path(p).is_file() for p in lines)
    code, out, _ = run(capsys, "find", "rocket", "--json", "-k", "1")
    [hit] = json.loads(out)["results"]
    assert hit["source_path"] == str(rocket) and "media" in hit["path"]
    code, out, _ = run(capsys, "list")
    assert str(rocket) in out
    rocket.unlink()  # gone from the folder: the stored copy is shown rather than a dead path
    code, out, _ = run(capsys, "search", str(photos["rocket"]), "-k", "1", "-f")
    assert "media" in out and Path(out.strip()).is_file()


def test_the_console_shows_the_operators_own_path(cli_env: Path, folder: Path, photos: dict[str, Path],
                                                  capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    run(capsys, "index", str(folder), "--labels-from-folders")
    monkeypatch.setattr("sys.stdin", io.StringIO(f"/match {photos['coffee']}\n"))
    code, out, _ = run(capsys, "chat")
    assert code == 0 and f"image: {(folder / 'coffee' / photos['coffee'].name).resolve()}" in out


def test_a_label_that_cleans_differently_is_still_unchanged(cli_env: Path, tmp_path: Path, photos: dict[str, Path],
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    folder = labelled_folder(tmp_path / "spaced", {"my  cat": photos["chelsea"]})
    run(capsys, "index", str(folder), "--labels-from-folders")
    assert [img["label"] for img in listing(capsys)] == ["my cat"]  # runs of spaces become one
    _, out, _ = run(capsys, "index", str(folder), "--labels-from-folders")
    assert "0 new, 0 changed, 1 unchanged" in out
