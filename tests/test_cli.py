"""The clipbot command line, run in-process against a temp data dir and the tiny model."""

from __future__ import annotations

import json
import pickle
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bot.cli import main
from tests.conftest import labelled_folder, recompressed


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def image_count(data_dir: Path) -> int:
    with sqlite3.connect(data_dir / "clipbot.db") as con:
        return int(con.execute("SELECT COUNT(*) FROM images").fetchone()[0])


@pytest.fixture
def indexed(cli_env: Path, tmp_path: Path, photos: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> Path:
    folder = labelled_folder(tmp_path / "photos", photos)
    (folder / "notes.txt").write_text("not a photo")
    code, out, err = run(capsys, "index", str(folder), "--labels-from-folders")
    assert code == 0, err
    assert f"{len(photos)} new, 0 changed, 0 unchanged, 0 pruned, 1 skipped" in out
    assert "notes.txt" in err and "not an image" in err
    return folder


def test_index_search_and_find_end_to_end(
    indexed: Path, tmp_path: Path, photos: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    for name in ("chelsea", "grace_hopper", "motorcycle"):
        query = tmp_path / f"query-{name}.jpg"
        query.write_bytes(recompressed(photos[name], scale=0.5, quality=60))
        code, out, _ = run(capsys, "search", str(query), "-k", "3", "--json")
        assert code == 0
        results = json.loads(out)["results"]
        assert results[0]["label"] == name and len(results) == 3
    code, out, _ = run(capsys, "find", "grace", "--json")
    assert code == 0 and json.loads(out)["results"][0]["label"] == "grace_hopper"


def test_json_shape(indexed: Path, photos: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "search", str(photos["rocket"]), "--json", "-k", "2")
    results = json.loads(out)["results"]
    assert code == 0 and list(json.loads(out)) == ["results"]
    for r in results:
        assert set(r) == {"id", "label", "description", "path", "source_path", "score"}
        assert isinstance(r["id"], int) and isinstance(r["score"], float) and -1.0 <= r["score"] <= 1.0
        assert Path(r["path"]).is_file()


def test_scores_lists_every_image_best_first(
    indexed: Path, photos: dict[str, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "scores", str(photos["coffee"]), "--json")
    scores = [r["score"] for r in json.loads(out)["results"]]
    assert code == 0 and len(scores) == len(photos) and scores == sorted(scores, reverse=True)


def test_plain_output_is_readable(indexed: Path, photos: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "search", str(photos["rocket"]), "-k", "1")
    assert code == 0 and "rocket" in out and "1.000" in out


def test_reindex_updates_and_csv_labels(indexed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                        cli_env: Path) -> None:
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text("path,label,description\nphotos/rocket/rocket.jpg,Saturn V,on the pad at dawn\n")
    code, out, _ = run(capsys, "index", str(indexed / "rocket"), "--labels-csv", str(csv_file))
    assert code == 0 and "0 new, 1 changed, 0 unchanged" in out
    code, out, _ = run(capsys, "find", "dawn", "--json", "-k", "1")
    hit = json.loads(out)["results"][0]
    assert (hit["label"], hit["description"]) == ("Saturn V", "on the pad at dawn")
    assert image_count(cli_env) == 10


def test_csv_alone_indexes_its_rows(cli_env: Path, tmp_path: Path, photos: dict[str, Path],
                                    capsys: pytest.CaptureFixture[str]) -> None:
    csv_file = tmp_path / "labels.csv"
    csv_file.write_text(f"path,label,description\n{photos['coffee']},coffee,a cup\n{photos['rocket']},rocket,\n")
    code, out, _ = run(capsys, "index", "--labels-csv", str(csv_file), "--collection", "kitchen")
    assert code == 0 and "2 new" in out and "'kitchen'" in out


def test_list_stats_remove(indexed: Path, capsys: pytest.CaptureFixture[str], cli_env: Path) -> None:
    code, out, _ = run(capsys, "list", "--json")
    images = json.loads(out)["images"]
    assert code == 0 and len(images) == 10
    code, out, _ = run(capsys, "stats")
    assert code == 0 and "Images:      10 in 1 collection(s)" in out and "10 for the configured model" in out
    assert "Precision:   fp32 (CLIPBOT_PRECISION)" in out
    code, out, _ = run(capsys, "remove", str(images[0]["id"]))
    assert code == 0 and "Removed" in out and image_count(cli_env) == 9
    code, _, err = run(capsys, "remove", str(images[0]["id"]))
    assert code == 1 and err.strip() == f"clipbot: error: There is no image #{images[0]['id']}."


def test_stats_shows_what_auto_precision_measured(cli_env: Path, tmp_path: Path, clip_dir: Path,
                                                  monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from core.models.clip import resolve_device
    from core.models.precision import Measurement, PrecisionCache

    monkeypatch.setenv("CLIPBOT_PRECISION", "auto")
    monkeypatch.setenv("CLIPBOT_CACHE_DIR", str(tmp_path / "cache"))
    code, out, _ = run(capsys, "stats")
    assert code == 0 and "Precision:   auto, not yet measured on this machine" in out
    # What a load on this machine would have remembered: stats reads it without loading the model.
    PrecisionCache.for_model(tmp_path / "cache", clip_dir, resolve_device("auto")).store(Measurement(
        "bf16", 0.99996, agreements={"fp32": 1.0, "int8": 0.95, "bf16": 0.99996},
        images_per_s={"fp32": {1: 20.0, 8: 25.0}, "bf16": {1: 31.3, 8: 60.9, 32: 100.0}}, index_batch=32))
    code, out, _ = run(capsys, "stats")
    assert code == 0
    assert "Precision:   bf16 (auto, agrees with fp32 at cosine 1.0000)" in out
    assert "  bf16  images/s (model alone): 31.3 at batch 1, 60.9 at batch 8, 100.0 at batch 32" in out
    assert "  fp32  images/s (model alone): 20.0 at batch 1, 25.0 at batch 8" in out
    assert "  disagree with fp32: int8 (0.9500)" in out and "  index batch: 32 " in out


def _half_rocket() -> bytes:
    from tests.conftest import PHOTO_FILES

    data = PHOTO_FILES["rocket"].read_bytes()
    return data[: len(data) // 2]


BAD_INPUTS = {
    "missing.jpg": (None, "No such file"),
    "notes.jpg": (b"hello, I am text", "not an image"),
    "doc.pdf": (b"%PDF-1.4\n...", "PDF"),
    "cut.jpg": (_half_rocket(), "truncated"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_exit_1_one_line_nothing_stored(
    cli_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    data, message = BAD_INPUTS[name]
    path = tmp_path / name
    if data is not None:
        path.write_bytes(data)
    for command in ("search", "scores"):
        code, out, err = run(capsys, command, str(path))
        assert code == 1 and message in err and out == ""
        assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    code, out, err = run(capsys, "index", str(path))
    assert code == 1 and message in out + err  # nothing could be indexed
    assert not (cli_env / "clipbot.db").exists() or image_count(cli_env) == 0


def test_too_large_exit_1(cli_env: Path, photos: dict[str, Path], capsys: pytest.CaptureFixture[str],
                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPBOT_MAX_IMAGE_PIXELS", "1000")
    code, _, err = run(capsys, "search", str(photos["astronaut"]))
    assert code == 1 and "megapixels" in err and "Traceback" not in err


def test_index_reports_bad_files_in_summary(cli_env: Path, tmp_path: Path, photos: dict[str, Path],
                                            capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "mixed"
    folder.mkdir()
    (folder / "good.jpg").write_bytes(photos["rocket"].read_bytes())
    (folder / "broken.jpg").write_bytes(_half_rocket())
    (folder / "fake.png").write_bytes(b"plain text")
    code, out, _ = run(capsys, "index", str(folder))
    assert code == 0 and "1 new, 0 changed, 0 unchanged, 0 pruned, 2 skipped" in out
    assert "broken.jpg: The JPEG image is damaged or truncated" in out and "fake.png: That file is not an image" in out
    assert image_count(cli_env) == 1


def test_usage_errors_exit_2(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "search")[0] == 2
    assert run(capsys, "frobnicate")[0] == 2
    assert run(capsys, "search", "x.jpg", "-k", "many")[0] == 2
    code, _, err = run(capsys, "find", "cat", "-k", "0")
    assert code == 2 and "must be at least 1" in err
    code, _, err = run(capsys, "index")
    assert code == 2 and "at least one PATH" in err
    assert not (cli_env / "clipbot.db").exists()  # a usage error creates no database


def test_debug_shows_traceback(cli_env: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "--debug", "search", "missing.jpg")
    assert code == 1 and "Traceback" in err and "No such file" in err


def test_bad_setting_is_one_line(cli_env: Path, capsys: pytest.CaptureFixture[str],
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPBOT_BATCH_SIZE", "zero")
    code, _, err = run(capsys, "stats")
    assert code == 1 and "CLIPBOT_BATCH_SIZE" in err and len(err.strip().splitlines()) == 1


def test_dotenv_file_is_read(cli_env: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLIPBOT_DATA_DIR")
    (tmp_path / ".env").write_text(f"CLIPBOT_DATA_DIR={tmp_path / 'from-dotenv'}\n")
    code, out, _ = run(capsys, "stats")
    assert code == 0 and str(tmp_path / "from-dotenv" / "clipbot.db") in out


def test_export_import_round_trip_bit_exact(indexed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    out_file = tmp_path / "export.pkl"
    code, out, _ = run(capsys, "export", str(out_file))
    assert code == 0 and "Exported 10" in out
    exported = pickle.loads(out_file.read_bytes())
    monkeypatch.setenv("CLIPBOT_DATA_DIR", str(tmp_path / "fresh"))
    code, out, _ = run(capsys, "import", str(out_file), "--collection", "imported")
    assert code == 0 and "10 added" in out
    again = tmp_path / "again.pkl"
    run(capsys, "export", str(again), "--collection", "imported")
    reimported = pickle.loads(again.read_bytes())
    by_label = {e["label"]: e for e in reimported}
    for e in exported:
        assert by_label[e["label"]]["embedding"].tobytes() == e["embedding"].tobytes()
        assert by_label[e["label"]]["embedding"].dtype == np.float32


def test_import_without_image_files_keeps_vectors(cli_env: Path, tmp_path: Path, photos: dict[str, Path],
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    vec = np.random.default_rng(1).standard_normal(16).astype(np.float32)
    f = tmp_path / "seed.pkl"
    f.write_bytes(pickle.dumps([{"path": "/gone/cat.jpg", "embedding": vec, "label": "cat", "description": ""}]))
    code, out, _ = run(capsys, "import", str(f))
    assert code == 0 and "1 added" in out and "no readable image file" in out
    code, out, _ = run(capsys, "find", "cat", "--json")
    assert json.loads(out)["results"][0]["path"] == "/gone/cat.jpg"


def test_import_refuses_other_dimension_and_malicious(cli_env: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    wrong = tmp_path / "wrong.pkl"
    wrong.write_bytes(pickle.dumps([{"path": "a.jpg", "embedding": np.ones(512, np.float32), "label": "a",
                                     "description": ""}]))
    code, _, err = run(capsys, "import", str(wrong))
    assert code == 1 and "512-dimensional" in err and "16-dimensional" in err
    evil = tmp_path / "evil.pkl"
    marker = tmp_path / "ran"
    evil.write_bytes(b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR.")
    code, _, err = run(capsys, "import", str(evil))
    assert code == 1 and "Refused to load the pickle" in err and not marker.exists()
    assert image_count(cli_env) == 0


def test_download_models_with_local_dir(cli_env: Path, clip_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "download-models")
    assert code == 0 and str(clip_dir) in out and "16-dimensional" in out


def test_unreachable_model_is_one_line(cli_env: Path, photos: dict[str, Path], capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLIPBOT_CLIP_MODEL", "nobody/not-a-model")
    for argv in (["download-models"], ["search", str(photos["rocket"])]):
        code, _, err = run(capsys, *argv)
        assert code == 1 and "CLIPBOT_CLIP_MODEL" in err and len(err.strip().splitlines()) == 1


def test_run_without_platforms_starts_the_console(cli_env: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch, photos: dict[str, Path]) -> None:
    import io

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Terminal(f"/add {photos['rocket']} | rocket | on the pad\n/find rocket\n"))
    code, out, err = run(capsys, "run")
    assert code == 0 and "No chat platform is configured" in err and ".env.example" in err
    assert "Added #1 \u201crocket\u201d (on the pad)" in out
    assert re.search(r"bot> rocket\nbot> on the pad\nbot> Score: -?\d\.\d\d \u00b7 #1 \u00b7 match 1 of 1", out)


def test_python_dash_m_bot(cli_env: Path, tmp_path: Path) -> None:
    help_run = subprocess.run([sys.executable, "-m", "bot", "find", "--help"], capture_output=True, text=True)
    assert help_run.returncode == 0 and "usage: clipbot find" in help_run.stdout
    bad = subprocess.run([sys.executable, "-m", "bot", "search", str(tmp_path / "nope.jpg")],
                         capture_output=True, text=True)
    assert bad.returncode == 1 and bad.stderr.startswith("clipbot: error: No such file")


def test_reindex_after_changing_the_model(indexed: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch, photos: dict[str, Path],
                                          clip_dir: Path) -> None:
    from tests.model_factory import build_clip_model

    other = build_clip_model(tmp_path / "other-clip", seed=1, projection_dim=24)
    monkeypatch.setenv("CLIPBOT_CLIP_MODEL", str(other))
    code, out, _ = run(capsys, "stats")
    assert "0 for the configured model" in out and "run `clipbot reindex`" in out
    for argv in (["search", str(photos["rocket"])], ["find", "cat"], ["scores", str(photos["rocket"])]):
        code, out, err = run(capsys, *argv)  # old vectors belong to the old model: not "no images"
        assert code == 1 and out == "" and "indexed with the model" in err and "clipbot reindex" in err
        assert f"{str(clip_dir)!r}" in err and f"{str(other)!r}" in err
    code, out, _ = run(capsys, "reindex")
    assert code == 0 and "Re-encoded 10 image(s)" in out
    code, out, _ = run(capsys, "search", str(photos["rocket"]), "--json", "-k", "1")
    assert json.loads(out)["results"][0]["label"] == "rocket"
    code, out, _ = run(capsys, "reindex")
    assert "Re-encoded 0 image(s)" in out  # nothing left to do


def test_the_migrate_summary_says_what_was_copied_and_what_stayed_behind(capsys: pytest.CaptureFixture[str]) -> None:
    from bot.output import print_copy_report
    from core.storage import CopyReport, StateCopied

    report = CopyReport(
        copied=3, skipped=1, vectors_added=0, collections={"global": (2, 2), "telegram:-100": (2, 2)},
        vectors={"clip": (4, 4)}, sightings_copied=5, sightings={"telegram:-100": (5, 5)},
        state={"chat switches": StateCopied(copied=2), "inline search members": StateCopied(copied=1, kept=1),
               "inline file ids": StateCopied(copied=4, orphaned=1)},
        left_behind={"result threads": 7, "rate-limit counters": 2}, texts_copied=2, texts=(3, 3),
    )
    print_copy_report(report, "/data/clipbot.db", "postgresql://db/clipbot", pictures_dir=Path("/data/media"),
                      thread_hours=24)
    assert capsys.readouterr().out == (
        "Copied 3 image(s) from /data/clipbot.db to postgresql://db/clipbot; 1 were there already "
        "(0 vector(s) added to them).\n"
        "  global                   2 -> 2\n"
        "  telegram:-100            2 -> 2\n"
        "  vectors of clip: 4 -> 4\n"
        "  repost records: 5 -> 5 (5 copied)\n"
        "  text read in pictures: 3 -> 3 (2 copied)\n"
        "  chat switches: 2 copied\n"
        "  inline search members: 1 copied, 1 already there (kept)\n"
        "  inline file ids: 4 copied, 1 skipped (their image was not copied)\n"
        "Left behind: result threads (7), rate-limit counters (2); each expires by itself (result threads within "
        "24 hours).\n"
        'Open result threads are not copied: buttons under results shown before the move answer "expired" once '
        "the bot uses the new database; a new search there gives working buttons.\n"
        "Pictures stay in /data/media: point CLIPBOT_MEDIA_DIR there for every worker that uses the new database.\n"
    )
