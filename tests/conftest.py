"""Shared fixtures: a tiny random CLIP saved to disk, real photos from installed packages, engines."""

from __future__ import annotations

import os
import tempfile

# First of all: the suite does not depend on the caller's environment (see tests/environment.py).
import tests.environment  # noqa: F401  (controls os.environ as it is imported)

# Nor the user's own clipbot: the default data, config and cache directories (platformdirs,
# read by subprocesses too) point into a throwaway home for the session.
os.environ["CLIPBOT_TEST_HOME"] = tempfile.mkdtemp(prefix="clipbot-test-home-")
os.environ["XDG_DATA_HOME"] = os.path.join(os.environ["CLIPBOT_TEST_HOME"], "data")
os.environ["XDG_CONFIG_HOME"] = os.path.join(os.environ["CLIPBOT_TEST_HOME"], "config")
os.environ["XDG_CACHE_HOME"] = os.path.join(os.environ["CLIPBOT_TEST_HOME"], "cache")
os.environ["XDG_STATE_HOME"] = os.path.join(os.environ["CLIPBOT_TEST_HOME"], "state")

import io
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import matplotlib
import pytest
import skimage
import sklearn
from PIL import Image

from bot.composition import build_chat_engine, build_encoder, build_engine
from bot.settings import Settings
from core.gallery.engine import Engine
from core.models.blip import BlipCaptioner
from core.models.clip import ClipEncoder
from tests.model_factory import build_blip_model, build_clip_model

SKIMAGE_DATA = Path(skimage.__file__).parent / "data"
PHOTO_FILES: dict[str, Path] = {
    "astronaut": SKIMAGE_DATA / "astronaut.png",
    "coffee": SKIMAGE_DATA / "coffee.png",
    "chelsea": SKIMAGE_DATA / "chelsea.png",
    "rocket": SKIMAGE_DATA / "rocket.jpg",
    "motorcycle": SKIMAGE_DATA / "motorcycle_left.png",
    "hubble": SKIMAGE_DATA / "hubble_deep_field.jpg",
    "retina": SKIMAGE_DATA / "retina.jpg",
    "grace_hopper": Path(matplotlib.get_data_path()) / "sample_data" / "grace_hopper.jpg",
    "china": Path(sklearn.__file__).parent / "datasets" / "images" / "china.jpg",
    "flower": Path(sklearn.__file__).parent / "datasets" / "images" / "flower.jpg",
}


@pytest.fixture(scope="session")
def photos() -> dict[str, Path]:
    missing = [str(p) for p in PHOTO_FILES.values() if not p.is_file()]
    assert not missing, f"test photos missing from installed packages: {missing}"
    return PHOTO_FILES


@pytest.fixture(scope="session")
def clip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random CLIP directory, loaded by the same from_pretrained path as a real one."""
    return build_clip_model(tmp_path_factory.mktemp("tiny-clip"))


@pytest.fixture(scope="session")
def blip_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random BLIP directory, loaded by the same from_pretrained path as a real one."""
    return build_blip_model(tmp_path_factory.mktemp("tiny-blip"))


@pytest.fixture(scope="session")
def captioner(blip_dir: Path) -> BlipCaptioner:
    """One loaded captioner for the session; loading is what it shares, not state."""
    cap = BlipCaptioner(str(blip_dir))
    cap.load()
    return cap


@pytest.fixture
def settings(tmp_path: Path, clip_dir: Path) -> Settings:
    """Captions off unless a test asks for the tiny BLIP: most tests look at other things."""
    return Settings(  # type: ignore[call-arg]
        clip_model=str(clip_dir), caption_model="none", precision="fp32", data_dir=tmp_path / "data",
        _env_file=None,
    )


@pytest.fixture(scope="session")
def encoder(clip_dir: Path) -> ClipEncoder:
    """One loaded encoder for the whole session; loading is what it shares, not state."""
    # fp32: most tests compare vectors to float tolerance; the faster precisions have tests of their own.
    enc = build_encoder(Settings(clip_model=str(clip_dir), precision="fp32", _env_file=None))  # type: ignore[call-arg]
    enc.load()
    return enc


@pytest.fixture
async def engine(settings: Settings, encoder: ClipEncoder) -> AsyncIterator[Engine]:
    async with build_engine(settings, encoder) as eng:
        yield eng


@pytest.fixture
def cli_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, clip_dir: Path) -> Path:
    """Environment for running the CLI in a temp working directory; returns the data dir."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("CLIPBOT_CLIP_MODEL", str(clip_dir))
    monkeypatch.setenv("CLIPBOT_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("CLIPBOT_CAPTION_MODEL", "none")
    monkeypatch.setenv("CLIPBOT_PRECISION", "fp32")
    return tmp_path / "data"


def recompressed(path: Path, *, scale: float = 0.6, quality: int = 70) -> bytes:
    """A resized, JPEG re-compressed copy: what a chat app makes of a photo."""
    img = Image.open(path).convert("RGB")
    img = img.resize((max(1, int(img.width * scale)), max(1, int(img.height * scale))))
    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    return buf.getvalue()


def labelled_folder(root: Path, photos: dict[str, Path]) -> Path:
    """Copy each photo into a folder named after it (its label)."""
    for name, src in photos.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        shutil.copy(src, root / name / src.name)
    return root


@pytest.fixture
async def gallery(settings: Settings, encoder: ClipEncoder, photos: dict[str, Path]) -> AsyncIterator[Engine]:
    """A chat engine whose shared gallery holds four labelled photos."""
    engine = build_chat_engine(settings, encoder)
    await engine.start()
    for name, description in (("rocket", "on the launch pad"), ("coffee", "a cup"), ("chelsea", "ginger cat"),
                              ("astronaut", "portrait")):
        await engine.add_image(photos[name], label=name, description=description)
    yield engine
    await engine.close()
