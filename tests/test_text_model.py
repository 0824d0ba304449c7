"""CLIPBOT_TEXT_MODEL: a multilingual text model beside CLIP, loaded through the settings like a real one.

The tiny text model has the layout of sentence-transformers/clip-ViT-B-32-multilingual-v1
(tests/model_factory.py); it is random, so the tests check where vectors come from, not what they mean.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bot.cli import main
from bot.composition import build_encoder, build_engine
from bot.downloads import download_model
from bot.settings import Settings
from core.errors import ModelLoadError
from core.gallery.engine import Engine
from core.media.images import decode_image
from core.models.clip import ClipEncoder
from core.models.text import ClipWithTextModel, MultilingualTextEncoder
from core.models.text_files import text_model_patterns
from tests.model_factory import build_text_model
from tests.test_model_loading_offline import _closed_port, _fake_hub_cache, _run

TEXTS = ["a red cat", "un gato rojo", "un chat rouge", "eine rote Katze", "красная кошка", "红猫", "قطة حمراء",
         "あかいねこ", "κόκκινη γάτα"]
HUB_ID = "sentence-transformers/clip-ViT-B-32-multilingual-v1"


@pytest.fixture(scope="module")
def text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random multilingual text model making 16-dimensional vectors, as the tiny CLIP does."""
    return build_text_model(tmp_path_factory.mktemp("tiny-text"), dim=16)


def text_settings(tmp_path: Path, clip_dir: Path, text_model: Path | str | None, **more: Any) -> Settings:
    return Settings(  # type: ignore[call-arg]
        clip_model=str(clip_dir), text_model=None if text_model is None else str(text_model), caption_model="none",
        precision="fp32", index_precision="fp32", data_dir=tmp_path / "data", _env_file=None, **more,
    )


def test_texts_in_any_language_become_unit_vectors_of_clips_dimension(
    tmp_path: Path, clip_dir: Path, text_dir: Path, encoder: ClipEncoder, photos: dict[str, Path]
) -> None:
    enc = build_encoder(text_settings(tmp_path, clip_dir, text_dir, batch_size=2))  # 2: several model calls
    assert isinstance(enc, ClipWithTextModel)
    assert [enc.loaded, enc.clip.loaded, enc.text.loaded] == [False] * 3  # nothing loads before first use
    assert enc.model_id == encoder.model_id  # stored vectors are CLIP's image vectors, as without it

    vectors = enc.encode_texts(TEXTS)
    assert [enc.loaded, enc.clip.loaded, enc.text.loaded] == [True] * 3
    assert vectors.dtype == np.float32 and vectors.shape == (len(TEXTS), encoder.dim)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    # Every script is tokenized, not collapsed to [UNK]: no two languages give the same vector.
    cosines = vectors @ vectors.T
    assert cosines[~np.eye(len(TEXTS), dtype=bool)].max() < 0.9999
    for i, text in enumerate(TEXTS):
        np.testing.assert_allclose(enc.encode_texts([text])[0], vectors[i], atol=1e-4)  # batch equals single
    assert enc.encode_texts([]).shape == (0, encoder.dim)

    # Texts come from the text model, images from CLIP.
    np.testing.assert_allclose(vectors, enc.text.encode_texts(TEXTS), atol=1e-6)
    assert np.abs(vectors - encoder.encode_texts(TEXTS)).max() > 0.1
    image = decode_image(photos["coffee"]).image
    np.testing.assert_allclose(enc.encode_images([image]), encoder.encode_images([image]), atol=1e-5)


def test_long_text_is_cut_to_the_models_length(text_dir: Path) -> None:
    enc = MultilingualTextEncoder(str(text_dir), device="cpu")
    long = "gato " * 400
    cut, longer = enc.encode_texts([long, long + "perro"])
    np.testing.assert_allclose(cut, longer, atol=1e-6)  # sentence_bert_config.json's 16 tokens, not 64
    assert enc.encode_texts(["gato"])[0] @ cut < 0.9999


@pytest.mark.parametrize("variant", ["bin", "0_Transformer"])
def test_older_layouts_load_the_same_model(tmp_path: Path, text_dir: Path, variant: str) -> None:
    """The Dense weights as first published (a weights-only PyTorch pickle), and old local saves
    with the transformer in 0_Transformer, give the same vectors."""
    if variant == "bin":
        model = build_text_model(tmp_path / "bin", dim=16, dense_weights="bin")
        assert not (model / "2_Dense" / "model.safetensors").exists()
    else:
        model = Path(shutil.copytree(text_dir, tmp_path / "old"))
        (model / "0_Transformer").mkdir()
        for item in list(model.iterdir()):
            if item.is_file() and item.name not in ("modules.json", "config_sentence_transformers.json"):
                item.rename(model / "0_Transformer" / item.name)
        modules = json.loads((model / "modules.json").read_text())
        modules[0]["path"] = "0_Transformer"
        (model / "modules.json").write_text(json.dumps(modules))
    want = MultilingualTextEncoder(str(text_dir), device="cpu").encode_texts(TEXTS)
    np.testing.assert_allclose(MultilingualTextEncoder(str(model), device="cpu").encode_texts(TEXTS), want, atol=1e-6)


async def _add_photos(engine: Engine, photos: dict[str, Path]) -> None:
    # Labels that no query below contains: every hit is ranked by its vector alone.
    for name in ("rocket", "coffee", "chelsea", "astronaut", "flower"):
        await engine.add_image(photos[name], label=f"item {name}", description="")


async def test_find_text_ranks_by_the_text_models_vector(
    tmp_path: Path, clip_dir: Path, text_dir: Path, photos: dict[str, Path]
) -> None:
    settings = text_settings(tmp_path, clip_dir, text_dir)
    async with build_engine(settings, captioner=None) as engine:  # the encoder comes from the settings
        await _add_photos(engine, photos)
        results = await engine.find_text("gato", k=5)
        stored = await engine.vectors_for([r.id for r in results])
        runner_encoder = build_encoder(settings)
    assert isinstance(runner_encoder, ClipWithTextModel)
    mine = runner_encoder.text.encode_texts(["gato"])[0]
    clips = runner_encoder.clip.encode_texts(["gato"])[0]
    scores = np.array([r.score for r in results])
    with_text_model = np.array([stored[r.id] @ mine for r in results])
    with_clip = np.array([stored[r.id] @ clips for r in results])
    assert len(results) == 5 and np.all(np.diff(scores) <= 1e-6)
    np.testing.assert_allclose(scores, with_text_model, atol=1e-3)
    assert np.abs(scores - with_clip).max() > 0.05  # CLIP's own text encoder would have scored otherwise


async def test_a_text_model_pointing_at_one_image_finds_it_in_any_language(
    tmp_path: Path, clip_dir: Path, photos: dict[str, Path]
) -> None:
    """A text model that sends every text to the coffee photo's vector: /find, whatever the words,
    answers that photo with a cosine of 1. CLIP's own text encoder finds no such match."""
    async with build_engine(text_settings(tmp_path, clip_dir, None), captioner=None) as engine:
        await _add_photos(engine, photos)
        coffee = next(r for r in await engine.list_images() if r.label == "item coffee")
        target = (await engine.vectors_for([coffee.id]))[coffee.id]
        clip_best = (await engine.find_text("кошка", k=1))[0]
    assert clip_best.score < 0.9

    pointer = build_text_model(tmp_path / "pointer", dim=16, target=target.tolist())
    # The same gallery, no reindex: the stored vectors are CLIP's image vectors either way.
    async with build_engine(text_settings(tmp_path, clip_dir, pointer), captioner=None) as engine:
        for query in ("кошка", "un gato naranja", "猫", "a cat"):
            best = (await engine.find_text(query, k=1))[0]
            assert best.id == coffee.id and best.score == pytest.approx(1.0, abs=1e-3)


def _image_count(data_dir: Path) -> int:
    if not (data_dir / "clipbot.db").exists():
        return 0
    with sqlite3.connect(data_dir / "clipbot.db") as con:
        return int(con.execute("SELECT COUNT(*) FROM images").fetchone()[0])


@pytest.fixture(scope="module")
def wide_text_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A text model making 24-dimensional vectors: not comparable with the tiny CLIP's 16."""
    return build_text_model(tmp_path_factory.mktemp("wide-text"), dim=24)


async def test_a_text_model_of_another_dimension_is_refused_and_nothing_is_stored(
    tmp_path: Path, clip_dir: Path, wide_text_dir: Path, photos: dict[str, Path]
) -> None:
    settings = text_settings(tmp_path, clip_dir, wide_text_dir)
    enc = build_encoder(settings)
    with pytest.raises(ModelLoadError) as info:
        enc.load()
    message = str(info.value)
    assert "\n" not in message
    for part in (repr(str(wide_text_dir)), repr(str(clip_dir)), "24-dimensional", "16-dimensional",
                 "CLIPBOT_TEXT_MODEL", "CLIPBOT_CLIP_MODEL"):
        assert part in message
    assert isinstance(enc, ClipWithTextModel) and not enc.text.loaded  # refused before its weights load

    async with build_engine(settings, captioner=None) as engine:
        with pytest.raises(ModelLoadError, match="24-dimensional"):
            await engine.add_image(photos["coffee"], label="coffee")
        assert await engine.collection_counts() == {}


def test_the_command_line_names_a_dimension_mismatch_in_one_line(
    tmp_path: Path, clip_dir: Path, wide_text_dir: Path, photos: dict[str, Path], capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`find` and `download-models` exit 1 with the message alone; `index` stores nothing."""
    monkeypatch.chdir(tmp_path)
    for name, value in (("CLIP_MODEL", str(clip_dir)), ("TEXT_MODEL", str(wide_text_dir)), ("CAPTION_MODEL", "none"),
                        ("DATA_DIR", str(tmp_path / "data")), ("PRECISION", "fp32")):
        monkeypatch.setenv(f"CLIPBOT_{name}", value)
    for argv in (["find", "gato"], ["download-models"]):
        code = main(argv)
        err = capsys.readouterr().err
        assert code == 1 and "24-dimensional" in err and len(err.strip().splitlines()) == 1, (argv, err)
    folder = tmp_path / "photos"
    folder.mkdir()
    shutil.copy(photos["rocket"], folder / "rocket.jpg")
    code = main(["index", str(folder)])
    err = capsys.readouterr().err
    # The model loads before the first batch is read (its batch size decides the batches): one line.
    assert code == 1 and "24-dimensional" in err and len(err.strip().splitlines()) == 1, err
    assert _image_count(tmp_path / "data") == 0


def _clip_without_weights(clip_dir: Path, into: Path) -> Path:
    """The tiny CLIP minus its weights: refusing it proves the refusal comes before any weights load."""
    model = Path(shutil.copytree(clip_dir, into))
    (model / "model.safetensors").unlink()
    return model


@pytest.mark.parametrize("kind", ["clip", "blip", "plain distilbert"])
def test_a_model_of_another_kind_is_named_before_its_weights_load(
    tmp_path: Path, clip_dir: Path, blip_dir: Path, text_dir: Path, kind: str
) -> None:
    if kind == "clip":
        model, held = _clip_without_weights(clip_dir, tmp_path / "clip"), "holds a clip model (CLIPModel)"
    elif kind == "blip":
        model = Path(shutil.copytree(blip_dir, tmp_path / "blip"))
        (model / "model.safetensors").unlink()
        held = "holds a blip model (BlipForConditionalGeneration)"
    else:  # a transformers save of the text model's DistilBERT alone, without sentence-transformers' modules
        model = Path(shutil.copytree(text_dir, tmp_path / "distilbert"))
        (model / "modules.json").unlink()
        held = "holds a distilbert model (DistilBertModel) without sentence-transformers' modules.json"
    enc = build_encoder(text_settings(tmp_path, clip_dir, model))
    with pytest.raises(ModelLoadError) as info:
        enc.load()
    message = str(info.value)
    assert message.startswith(f"CLIPBOT_TEXT_MODEL={model} {held}, not a multilingual text model."), message
    assert HUB_ID in message and "\n" not in message
    with pytest.raises(ModelLoadError, match=held.replace("(", r"\(").replace(")", r"\)")):
        download_model(str(model), setting="CLIPBOT_TEXT_MODEL")


def test_a_missing_directory_and_an_uncached_hub_id_fail_fast(tmp_path: Path) -> None:
    # conftest sets HF_HUB_OFFLINE=1: a hub id missing from the cache fails at once.
    started = time.perf_counter()
    with pytest.raises(ModelLoadError) as info:
        MultilingualTextEncoder("clipbot-test/no-such-text-model").load()
    message = str(info.value)
    assert time.perf_counter() - started < 5
    assert "HF_HUB_OFFLINE=1 is set" in message and "CLIPBOT_TEXT_MODEL=/path/to/a/local/model/dir" in message
    assert "multilingual text model 'clipbot-test/no-such-text-model'" in message and "download-models" in message
    with pytest.raises(ModelLoadError, match="no such directory"):
        MultilingualTextEncoder(str(tmp_path / "nowhere") + "/").load()


HUB_SCRIPT = f"""
    import json, time
    from bot.downloads import download_model
    from core.errors import ModelLoadError
    from core.models.text import MultilingualTextEncoder

    out = {{}}
    for name, source in (("cached", "clipbot-test/tiny-text"), ("absent", "{HUB_ID}")):
        started = time.perf_counter()
        try:
            vector = MultilingualTextEncoder(source, device="cpu").encode_texts(["un gato rojo"])[0]
            out[name] = [round(float(vector @ vector), 4), time.perf_counter() - started]
        except ModelLoadError as exc:
            out[name] = [str(exc), time.perf_counter() - started]
        try:
            out[name + "-download"] = download_model(source, setting="CLIPBOT_TEXT_MODEL")
        except ModelLoadError as exc:
            out[name + "-download"] = str(exc)
    print(json.dumps(out))
"""


@pytest.mark.parametrize("network", ["HF_HUB_OFFLINE", "unreachable hub"])
def test_a_hub_id_loads_from_the_cache_and_an_uncached_one_says_how_to_get_it(
    tmp_path: Path, text_dir: Path, network: str
) -> None:
    """In a fresh process (the hub client reads its settings at import): the snapshot layout of a
    cached hub id, with its 1_Pooling and 2_Dense folders, loads without the network."""
    snapshot = _fake_hub_cache(tmp_path / "hub", "clipbot-test/tiny-text", text_dir)
    env = ({"HF_HUB_OFFLINE": "1", "HF_ENDPOINT": "http://10.255.255.1:9"} if network == "HF_HUB_OFFLINE"
           else {"HF_ENDPOINT": f"http://127.0.0.1:{_closed_port()}"})
    done, seconds = _run(HUB_SCRIPT, tmp_path, HF_HUB_CACHE=str(tmp_path / "hub"), **env)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert seconds < 60 and out["absent"][1] < 15, (seconds, out)
    assert out["cached"][0] == 1.0 and out["cached-download"] == str(snapshot)
    absent, download = out["absent"][0], out["absent-download"]
    assert absent.startswith(f"Cannot load the multilingual text model {HUB_ID!r} named by CLIPBOT_TEXT_MODEL")
    assert "download-models" in absent and "CLIPBOT_TEXT_MODEL=/path/to/a/local/model/dir" in absent
    assert download.startswith(f"Cannot download the multilingual text model {HUB_ID!r}")
    reason = "HF_HUB_OFFLINE=1 is set" if network == "HF_HUB_OFFLINE" else "cannot be reached"
    assert reason in absent and reason in download and "\n" not in absent + download


def test_download_models_takes_a_local_text_model_as_it_is(
    cli_env: Path, text_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("CLIPBOT_TEXT_MODEL", str(text_dir))
    code = main(["download-models"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "16-dimensional" in out and f"Text model {text_dir} ready at {text_dir}" in out


def test_a_hub_download_takes_what_the_model_needs_and_no_more(text_dir: Path) -> None:
    """The files of sentence-transformers/clip-ViT-B-32-multilingual-v1 on the hub today (its tree
    at main): the allow patterns keep the configs, tokenizer, safetensors weights and the module
    folders, and leave out the 539 MB PyTorch pickle beside them, the ONNX and OpenVINO copies."""
    from huggingface_hub.utils import filter_repo_objects

    hub_files = [
        ".gitattributes", "README.md", "config.json", "config_sentence_transformers.json", "model.safetensors",
        "modules.json", "pytorch_model.bin", "sentence_bert_config.json", "special_tokens_map.json",
        "tokenizer.json", "tokenizer_config.json", "vocab.txt", "1_Pooling/config.json", "2_Dense/config.json",
        "2_Dense/model.safetensors", "2_Dense/pytorch_model.bin", "onnx/model.onnx", "onnx/model_qint8_avx512.onnx",
        "openvino/openvino_model.xml", "openvino/openvino_model.bin",
    ]
    # The tiny model's modules.json lists the same modules, in the same folders, as the real one.
    kept = set(filter_repo_objects(hub_files, allow_patterns=text_model_patterns(text_dir / "modules.json")))
    assert kept == {
        "config.json", "config_sentence_transformers.json", "model.safetensors", "modules.json",
        "sentence_bert_config.json", "special_tokens_map.json", "tokenizer.json", "tokenizer_config.json",
        "vocab.txt", "1_Pooling/config.json", "2_Dense/config.json", "2_Dense/model.safetensors",
        "2_Dense/pytorch_model.bin",
    }
