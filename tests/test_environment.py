"""The suite passes whatever the caller exported: a subset run under a hostile environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.environment import controlled

ROOT = Path(__file__).parent.parent
# What some operators' shells and CI images export, and what would bend a test if it leaked in.
HOSTILE = {
    "PYTHONWARNINGS": "ignore", "HF_HUB_OFFLINE": "0", "HF_HOME": "/nonexistent/hf", "HF_ENDPOINT": "http://127.0.0.1:9",
    "TRANSFORMERS_OFFLINE": "0", "TRANSFORMERS_VERBOSITY": "debug", "CLIPBOT_CLIP_MODEL": "/nonexistent/clip",
    "CLIPBOT_RATE_LIMIT_PER_MINUTE": "1", "CLIPBOT_LOG_LEVEL": "debug", "TELEGRAM_BOT_TOKEN": "1:hostile",
    "LC_ALL": "C", "LANG": "tr_TR.UTF-8", "LC_NUMERIC": "de_DE.UTF-8",
}
SUBSET = [
    "tests/test_model_loading_offline.py::test_logging_prints_each_library_record_once",
    "tests/test_settings.py",
    "tests/test_web_identity.py",
]


def test_the_controlled_environment_drops_what_the_caller_set() -> None:
    env = controlled({**HOSTILE, "PATH": "/bin", "CLIPBOT_DEVICE": "cuda", "CLIPBOT_TEST_WEB_MODEL": "x"})
    assert env == {"PATH": "/bin", "CLIPBOT_DEVICE": "cuda", "CLIPBOT_TEST_WEB_MODEL": "x", "LC_ALL": "C.UTF-8",
                   "HF_HUB_OFFLINE": "1"}
    assert os.environ.get("PYTHONWARNINGS") is None and os.environ["HF_HUB_OFFLINE"] == "1"


def test_a_subset_passes_in_a_hostile_environment() -> None:
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *SUBSET], cwd=ROOT,
                          env={**os.environ, **HOSTILE}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert " passed" in done.stdout.splitlines()[-1] and "failed" not in done.stdout.splitlines()[-1]
