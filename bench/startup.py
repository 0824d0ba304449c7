"""Start-up of a one-off command: seconds from `clipbot search IMG -k 1` to its first result line.

Each run is a fresh process, as an operator's is. The first run of a gallery measures which
precision "auto" should use; the second finds it in CLIPBOT_CACHE_DIR. Where the rest goes is
measured too: the interpreter, importing the command line, importing torch and transformers' CLIP.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tests.conftest import PHOTO_FILES

ROOT = Path(__file__).resolve().parents[1]
IMPORTS = {
    "python_s": "pass",
    "cli_import_s": "import bot.cli",
    "torch_import_s": "import torch",
    "clip_classes_import_s": "from transformers import CLIPModel, CLIPProcessor",
}


def _env(model: Path, data: Path, cache: Path) -> dict[str, str]:
    return {
        # The checkout first, then whatever the caller's path held (packages installed beside it).
        **os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        "HF_HUB_OFFLINE": "1", "CLIPBOT_CLIP_MODEL": str(model.resolve()),
        "CLIPBOT_DATA_DIR": str(data), "CLIPBOT_CAPTION_MODEL": "none", "CLIPBOT_PRECISION": "auto",
        "CLIPBOT_CACHE_DIR": str(cache), "CLIPBOT_LOG_LEVEL": "INFO",
    }


def _first_line_and_exit(argv: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float, str]:
    """Seconds to the first line on stdout and to the exit; stderr, for what the run logged."""
    started = time.perf_counter()
    with subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as proc:
        assert proc.stdout is not None and proc.stderr is not None
        first = proc.stdout.readline()
        first_s = time.perf_counter() - started
        proc.stdout.read()
        err = proc.stderr.read()
        code = proc.wait()
    if code != 0 or not first:
        raise RuntimeError(f"{' '.join(argv)} failed ({code}): {err.strip()[-2000:]}")
    return first_s, time.perf_counter() - started, err


def _seconds(code: str, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        # os._exit: the interpreter's own teardown (a second after transformers) is not an import.
        subprocess.run([sys.executable, "-c", f"{code}\nimport os; os._exit(0)"], cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, check=True, capture_output=True)
        best = min(best, time.perf_counter() - started)
    return best


def run(model: Path, *, smoke: bool) -> dict[str, Any]:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        gallery = work / "gallery"
        gallery.mkdir()
        names = list(PHOTO_FILES)[: 3 if smoke else 6]
        for name in names:
            shutil.copy(PHOTO_FILES[name], gallery / f"{name}{PHOTO_FILES[name].suffix}")
        data, cache = work / "data", work / "cache"
        cli = [sys.executable, "-m", "bot"]
        # The gallery is indexed with a cache of its own, so the first search meets an empty one.
        _first_line_and_exit([*cli, "index", str(gallery)], _env(model, data, work / "index-cache"), work)
        query = str(next(gallery.iterdir()))
        env = _env(model, data, cache)
        first_s, first_exit_s, _ = _first_line_and_exit([*cli, "search", query, "-k", "1"], env, work)
        second_s, second_exit_s, logged = _first_line_and_exit([*cli, "search", query, "-k", "1"], env, work)
        result: dict[str, Any] = {
            "photos": len(names), "search_first_s": first_s, "search_second_s": second_s,
            "search_first_exit_s": first_exit_s, "search_second_exit_s": second_exit_s,
            # Whether the second run took the precision from the cache, as its log line says.
            "precision_remembered": "remembered)" in logged,
        }
    result.update({key: _seconds(code, 1 if smoke else 3) for key, code in IMPORTS.items()})
    return result
