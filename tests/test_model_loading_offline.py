"""Model loading in fresh processes: an unreachable hub, HF_HUB_OFFLINE, a hub cache, load reports, logging.

Each case runs in a subprocess, because the hub client reads its endpoint, cache and offline
switch from the environment once, at import.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CLIP_ID = "openai/clip-vit-base-patch32"
BLIP_ID = "Salesforce/blip-image-captioning-base"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(script: str, tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], float]:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("HF_", "TRANSFORMERS_", "HUGGINGFACE_")) and "proxy" not in k.lower()}
    clean.update(HF_HOME=str(tmp_path / "hf-home"), PYTHONPATH=str(ROOT), **env)
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(script)], cwd=ROOT, env=clean, capture_output=True,
                          text=True, timeout=240)
    return done, time.perf_counter() - started


LOAD_ALL = f"""
    import json, time
    from bot.downloads import download_model
    from core.models.blip import BlipCaptioner
    from core.models.clip import ClipEncoder
    from core.errors import ModelLoadError

    out = {{}}
    for name, call in (("clip", lambda: ClipEncoder("{CLIP_ID}").load()),
                       ("blip", lambda: BlipCaptioner("{BLIP_ID}").load()),
                       ("download", lambda: download_model("{CLIP_ID}", setting="CLIPBOT_CLIP_MODEL"))):
        started = time.perf_counter()
        try:
            call()
            out[name] = ["loaded", 0]
        except ModelLoadError as exc:
            out[name] = [str(exc), time.perf_counter() - started]
    print(json.dumps(out))
"""


def test_an_unreachable_hub_fails_fast_with_one_complete_message(tmp_path: Path) -> None:
    done, seconds = _run(LOAD_ALL, tmp_path, HF_ENDPOINT=f"http://127.0.0.1:{_closed_port()}")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    print(f"offline: {seconds:.1f} s for three loads in a fresh process", {k: v[1] for k, v in out.items()})
    assert seconds < 30  # minutes of retries before
    assert "Retrying" not in done.stderr and "Connection refused" not in done.stderr

    clip, blip, download = out["clip"][0], out["blip"][0], out["download"][0]
    for message, setting in ((clip, "CLIPBOT_CLIP_MODEL"), (blip, "CLIPBOT_CAPTION_MODEL")):
        assert "\n" not in message and message.endswith(".")
        assert "offline" in message and "cannot be reached" in message
        assert "`clipbot download-models`" in message  # fix 1
        assert f"{setting}=/path/to/a/local/model/dir" in message  # fix 2
        assert "HF_HUB_OFFLINE=1" in message and "cache" in message  # fix 3
    assert CLIP_ID in clip and BLIP_ID in blip and "CLIPBOT_CAPTION_MODEL" not in clip

    # download-models itself: the fixes that work without it.
    assert download.startswith(f"Cannot download the CLIP model {CLIP_ID!r} named by CLIPBOT_CLIP_MODEL")
    assert "offline" in download and "download-models" not in download
    assert "CLIPBOT_CLIP_MODEL=/path/to/a/local/model/dir" in download and "HF_HUB_OFFLINE=1" in download


def test_hf_hub_offline_never_tries_the_network(tmp_path: Path) -> None:
    # An endpoint that would hang if contacted: HF_HUB_OFFLINE=1 must not even probe it.
    done, seconds = _run(LOAD_ALL, tmp_path, HF_HUB_OFFLINE="1", HF_ENDPOINT="http://10.255.255.1:9")
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert seconds < 30
    clip, download = out["clip"][0], out["download"][0]
    assert "HF_HUB_OFFLINE=1 is set" in clip and "has no complete copy" in clip and str(tmp_path) in clip
    assert "download-models" in clip and "CLIPBOT_CLIP_MODEL=/path/to/a/local/model/dir" in clip
    assert "CLIPBOT_CAPTION_MODEL" in out["blip"][0]
    assert "HF_HUB_OFFLINE=1 is set" in download and "download-models" not in download


def _fake_hub_cache(hub: Path, repo: str, model: Path) -> Path:
    """``model`` as the hub client would have cached ``repo`` at one commit."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo_dir = hub / f"models--{repo.replace('/', '--')}"
    (repo_dir / "refs").mkdir(parents=True)
    (repo_dir / "refs" / "main").write_text(commit)
    return Path(shutil.copytree(model, repo_dir / "snapshots" / commit))


def test_a_cached_hub_model_remembers_its_precision_across_processes(tmp_path: Path, clip_dir: Path) -> None:
    _fake_hub_cache(tmp_path / "hub", "clipbot-test/tiny-clip", clip_dir)
    script = f"""
        import json
        from core.models.clip import ClipEncoder
        enc = ClipEncoder("clipbot-test/tiny-clip", precision="auto", cache_dir={str(tmp_path / "cache")!r})
        enc.load()
        print(json.dumps([enc.precision_used, enc.precision_from_cache, enc.encode_texts(["a cat"])[0].tolist()]))
    """
    runs = []
    for _ in range(2):
        done, _ = _run(script, tmp_path, HF_HUB_OFFLINE="1", HF_HUB_CACHE=str(tmp_path / "hub"))
        assert done.returncode == 0, done.stderr
        runs.append(json.loads(done.stdout))
    (first_precision, first_cached, first_vector), (second_precision, second_cached, second_vector) = runs
    assert not first_cached and second_cached and first_precision == second_precision
    assert max(abs(a - b) for a, b in zip(first_vector, second_vector, strict=True)) < 1e-5


def test_load_reports_stay_out_of_stderr_unless_debugging(tmp_path: Path, clip_dir: Path) -> None:
    from safetensors.torch import load_file, save_file

    model = Path(shutil.copytree(clip_dir, tmp_path / "clip"))
    weights = load_file(model / "model.safetensors")
    weights["stray.weight"] = weights["logit_scale"].clone()  # an unexpected key: transformers reports it
    save_file(weights, model / "model.safetensors", metadata={"format": "pt"})
    script = f"""
        import logging, sys
        if sys.argv[1:] == ["debug"]:
            logging.basicConfig(level=logging.DEBUG)
        from core.models.clip import ClipEncoder
        ClipEncoder({str(model)!r}, precision="fp32").load()
        print("loaded")
    """
    quiet, _ = _run(script, tmp_path, HF_HUB_OFFLINE="1")
    assert quiet.stdout.strip() == "loaded", quiet.stderr
    assert "LOAD REPORT" not in quiet.stderr and "stray" not in quiet.stderr
    debug = subprocess.run([sys.executable, "-c", textwrap.dedent(script), "debug"], cwd=ROOT, capture_output=True,
                           text=True, timeout=240, env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    assert "LOAD REPORT" in debug.stderr and "stray.weight" in debug.stderr  # the table is there for --debug


LOGGING = """
    import logging, sys, warnings
    from bot.logs import configure_logging
    configure_logging(debug=sys.argv[1] == "debug", level="WARNING")
    assert "transformers" not in sys.modules and "torch" not in sys.modules  # configured lazily
    configure_logging(debug=sys.argv[1] == "debug", level="WARNING")  # again: still one handler
    from huggingface_hub.utils import logging as hub_logging
    hub_logging.get_logger("huggingface_hub.utils._http").warning("hub retrying")
    hub_logging.get_logger("huggingface_hub.utils._http").error("hub failed")
    from transformers.utils import logging as tf_logging
    tf_logging.get_logger("transformers.modeling_utils").warning("transformers report")
    tf_logging.get_logger("transformers.modeling_utils").error("transformers failed")
    warnings.warn("a python warning")
    logging.getLogger("core.gallery.engine").warning("clipbot warning")
    logging.getLogger("core.gallery.engine").info("clipbot info")
"""


@pytest.mark.parametrize("mode", ["quiet", "debug"])
def test_logging_prints_each_library_record_once(tmp_path: Path, mode: str) -> None:
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(LOGGING), mode], cwd=ROOT, capture_output=True,
                          text=True, timeout=240, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    once = ["ERROR huggingface_hub.utils._http: hub failed", "ERROR transformers.modeling_utils: transformers failed",
            "WARNING core.gallery.engine: clipbot warning"]
    for line in once:
        assert lines.count(line) == 1, done.stderr
    assert sum("UserWarning: a python warning" in line for line in lines) == 1
    assert not any(line.strip() in {"hub failed", "transformers failed", "hub retrying"} for line in lines)
    shown_in_debug = ["WARNING huggingface_hub.utils._http: hub retrying",
                      "WARNING transformers.modeling_utils: transformers report",
                      "INFO core.gallery.engine: clipbot info"]
    for line in shown_in_debug:
        assert lines.count(line) == (1 if mode == "debug" else 0), done.stderr
