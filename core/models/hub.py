"""Where models come from: a local directory, the Hugging Face cache or the hub, and what to say when none works.

Every failure here becomes one complete :class:`ModelLoadError` line that names the setting and
the fixes. The hub is only contacted after the cache came up empty, and only when a quick probe
says it is reachable: an offline server fails in seconds instead of minutes of retries.
"""

from __future__ import annotations

import json
import logging
import os
import re
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar
from urllib.parse import urlsplit

from core.errors import ModelLoadError

log = logging.getLogger(__name__)
T = TypeVar("T")
PROBE_TIMEOUT_S = 3.0
_MAX_REASON_CHARS = 400
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z(`'\"])")
_TRUE = {"1", "ON", "YES", "TRUE"}


@dataclass(frozen=True)
class ModelKind:
    """What a setting must name: ``label`` for messages, and the config values that fit it."""

    label: str
    setting: str
    model_types: frozenset[str]
    architecture: str  # the transformers class clipbot loads; a config naming others is refused
    example: str  # a hub id to suggest

    def describe(self, source: str) -> str:
        """``the CLIP model 'x' named by CLIPBOT_CLIP_MODEL``, for messages."""
        return f"the {self.label} model {source!r} named by {self.setting}"


CLIP = ModelKind("CLIP", "CLIPBOT_CLIP_MODEL", frozenset({"clip"}), "CLIPModel", "openai/clip-vit-base-patch32")
BLIP_CAPTIONS = ModelKind("BLIP caption", "CLIPBOT_CAPTION_MODEL", frozenset({"blip"}),
                          "BlipForConditionalGeneration", "Salesforce/blip-image-captioning-base")


def looks_like_path(source: str) -> bool:
    """Whether ``source`` was meant as a directory rather than a hub id (``owner/name``)."""
    return (
        source.startswith((".", "~", "/", "\\")) or source.endswith(("/", "\\")) or "\\" in source
        or source.count("/") > 1 or re.match(r"^[A-Za-z]:", source) is not None
    )


def offline_forced() -> bool:
    """``HF_HUB_OFFLINE=1`` (or ``TRANSFORMERS_OFFLINE``): the network must not be tried at all."""
    from huggingface_hub import constants

    env = os.environ.get("HF_HUB_OFFLINE") or os.environ.get("TRANSFORMERS_OFFLINE") or ""
    return bool(constants.HF_HUB_OFFLINE) or env.upper() in _TRUE


def hub_endpoint() -> str:
    """The hub's base URL (``HF_ENDPOINT``, read by the hub client at import)."""
    from huggingface_hub import constants

    return str(constants.ENDPOINT)


_probe_lock = threading.Lock()
_reachable: bool | None = None


def hub_reachable(timeout: float = PROBE_TIMEOUT_S) -> bool:
    """A TCP connect to the hub (or to the proxy that reaches it), once per process.

    Only a connect: no request, so no retries; DNS that hangs counts as unreachable after ``timeout``.
    """
    global _reachable
    with _probe_lock:
        if _reachable is None:
            _reachable = _probe(timeout)
            if not _reachable:
                log.info("the hub %s is unreachable; models come from the cache only", hub_endpoint())
        return _reachable


def mark_hub_unreachable() -> None:
    """Record a connection failure, so that later loads in this process do not try again."""
    global _reachable
    with _probe_lock:
        _reachable = False


def _probe(timeout: float) -> bool:
    target = _probe_target()
    if target is None:
        return True  # an endpoint we cannot parse: let the hub client decide
    outcome: list[bool] = []

    def connect() -> None:
        try:
            socket.create_connection(target, timeout=timeout).close()
            outcome.append(True)
        except OSError:
            outcome.append(False)

    # getaddrinfo ignores socket timeouts; a daemon thread bounds a hanging resolver too.
    thread = threading.Thread(target=connect, name="clipbot-hub-probe", daemon=True)
    thread.start()
    thread.join(timeout + 0.5)
    return bool(outcome and outcome[0])


def _probe_target() -> tuple[str, int] | None:
    import urllib.request

    endpoint = urlsplit(hub_endpoint())
    if not endpoint.hostname:
        return None
    target = endpoint
    proxy = urllib.request.getproxies().get(endpoint.scheme)
    if proxy and not urllib.request.proxy_bypass(endpoint.hostname):
        target = urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    if not target.hostname:
        return None
    default_port = 443 if target.scheme == "https" else 80
    try:
        return target.hostname, target.port or default_port
    except ValueError:  # a malformed port
        return None


def first_sentence(text: str) -> str:
    """The first sentence of an exception's text: whole, never cut in the middle."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    sentence = _SENTENCE_END.split(line, maxsplit=1)[0].strip()
    if len(sentence) > _MAX_REASON_CHARS:  # pathological: cut at a word, and say so
        sentence = sentence[:_MAX_REASON_CHARS].rsplit(" ", 1)[0] + " …"
    return sentence


def model_load_error(setting: str, source: str, exc: BaseException) -> ModelLoadError:
    """One line naming the setting and the fix, instead of a transformers traceback."""
    reason = first_sentence(str(exc)) or type(exc).__name__
    reason = reason.rstrip(".")
    return ModelLoadError(
        f"Cannot load the model {source!r} from {setting}: {reason}. Fix: set {setting} to a model "
        f"directory on this machine, or run `clipbot download-models` once with internet access."
    )


def offline_error(kind: ModelKind, source: str, *, downloading: bool = False) -> ModelLoadError:
    """The hub is needed but out of reach (or forbidden by ``HF_HUB_OFFLINE``): why, and the fixes."""
    local_dir = f"set {kind.setting}=/path/to/a/local/model/dir (a copy saved with save_pretrained)"
    filled_cache = ("copy a Hugging Face cache that holds the model from a connected machine into "
                    "~/.cache/huggingface (or HF_HOME) and set HF_HUB_OFFLINE=1")
    if offline_forced():
        if downloading:
            return ModelLoadError(
                f"Cannot download {kind.describe(source)}: HF_HUB_OFFLINE=1 is set, which forbids the network. "
                f"Fix one of: unset HF_HUB_OFFLINE on a machine with internet access; {local_dir}."
            )
        return ModelLoadError(
            f"Cannot load {kind.describe(source)}: HF_HUB_OFFLINE=1 is set and the Hugging Face cache "
            f"({_cache_root()}) has no complete copy of it. Fix one of: run `clipbot download-models` on a "
            f"connected machine (or here without HF_HUB_OFFLINE) and copy its cache here; {local_dir}."
        )
    why = f"this machine looks offline ({hub_endpoint()} cannot be reached)"
    if downloading:
        return ModelLoadError(
            f"Cannot download {kind.describe(source)}: {why}. Downloading needs the hub; without it, fix one of: "
            f"{local_dir}; or {filled_cache}."
        )
    return ModelLoadError(
        f"Cannot load {kind.describe(source)}: it is not in the Hugging Face cache and {why}. Fix one of: "
        f"run `clipbot download-models` on a connected machine (or here once it is online); {local_dir}; "
        f"or {filled_cache}."
    )


def _cache_root() -> str:
    from huggingface_hub import constants

    return str(constants.HF_HUB_CACHE)


def check_source(kind: ModelKind, source: str) -> Path | None:
    """The local directory ``source`` names (checked to hold the right kind of model), or ``None``
    for a hub id. A path that does not exist, or holds another model, fails in one line here."""
    path = Path(source).expanduser()
    if path.is_dir():
        check_config(kind, source, path / "config.json")
        return path.resolve()
    if looks_like_path(source) or path.exists():
        what = "not a directory" if path.exists() else "no such directory"
        raise ModelLoadError(
            f"Cannot load the {kind.label} model from {kind.setting}: {what}: {source}. Fix: set {kind.setting} "
            f"to an existing model directory, or to a hub id such as {kind.example}."
        )
    return None


def check_config(kind: ModelKind, source: str, config: Path) -> None:
    """Refuse, in one line, a model directory whose config.json names another kind of model."""
    try:
        data = json.loads(config.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ModelLoadError(
            f"Cannot load the {kind.label} model from {kind.setting}: {source} holds no config.json, so it is not a "
            f"model saved with save_pretrained. Fix: point {kind.setting} at such a directory, or a hub id such "
            f"as {kind.example}."
        ) from None
    except (OSError, ValueError):
        return  # unreadable or damaged: transformers' own error says more
    if not isinstance(data, dict) or not kind.model_types:
        return
    model_type = str(data.get("model_type", ""))
    architectures = [str(a) for a in data.get("architectures") or []]
    wrong_type = model_type and model_type not in kind.model_types
    wrong_class = not wrong_type and architectures and kind.architecture not in architectures
    if wrong_type or wrong_class:
        held = f"a {model_type} model" + (f" ({', '.join(architectures)})" if architectures else "")
        raise ModelLoadError(
            f"{kind.setting}={source} holds {held}, not a {kind.label} model. Fix: point {kind.setting} at a "
            f"{kind.label} model, such as {kind.example}."
        )


def cached_snapshot(source: str) -> Path | None:
    """The Hugging Face cache's snapshot folder of hub id ``source`` (its path holds the commit)."""
    from huggingface_hub import try_to_load_from_cache

    try:
        found = try_to_load_from_cache(source, "config.json")
    except Exception:  # an id the hub client refuses: nothing cached under it
        return None
    return Path(found).parent if isinstance(found, str) else None


def model_files_dir(source: str) -> Path | None:
    """Where the files of ``source`` lie on this machine: the directory itself, or its cached snapshot."""
    path = Path(source).expanduser()
    return path.resolve() if path.is_dir() else cached_snapshot(source)


def from_cache_or_hub(load: Callable[..., T], *, kind: ModelKind, source: str) -> T:
    """Load from a local directory or the cache first: a cached model starts with no network at all.

    Only a cache miss goes online, and only when the hub answers a quick probe; its config is
    fetched first, so that a wrong kind of model is refused before gigabytes of weights.
    """
    local = check_source(kind, source)
    if local is not None:
        return load()
    snapshot = cached_snapshot(source)
    if snapshot is not None:
        check_config(kind, source, snapshot / "config.json")
    try:
        return load(local_files_only=True)
    except OSError as exc:
        cache_miss = exc
    if offline_forced() or not hub_reachable():
        raise offline_error(kind, source) from cache_miss
    try:
        check_config(kind, source, download_config(kind, source))
        return load()
    except Exception as exc:
        if connection_failure(exc):
            mark_hub_unreachable()
            raise offline_error(kind, source) from exc
        raise


def download_config(kind: ModelKind, source: str) -> Path:
    """config.json alone from the hub; a missing or gated repository is said plainly."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import (
        EntryNotFoundError,
        GatedRepoError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
    )

    try:
        return Path(hf_hub_download(source, "config.json"))
    except LocalEntryNotFoundError:  # the hub client's word for "could not reach the hub"
        raise
    except GatedRepoError:
        problem = "the hub repository is gated: accept its terms on the hub and log in with `hf auth login`"
    except RepositoryNotFoundError:
        problem = "the hub has no such model (or it is private), and there is no such directory here"
    except EntryNotFoundError:
        problem = "the hub repository holds no config.json, so it is not a transformers model"
    raise ModelLoadError(
        f"Cannot load {kind.describe(source)}: {problem}. Fix: set {kind.setting} to a hub id such as "
        f"{kind.example}, or to a model directory on this machine."
    )


def connection_failure(exc: BaseException) -> bool:
    """Whether ``exc`` (or what caused it) is the network failing rather than the model being wrong."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        name = type(current).__name__
        if isinstance(current, (ConnectionError, TimeoutError, socket.gaierror)) or any(
            word in name for word in ("Connect", "Timeout", "LocalEntryNotFound")
        ):
            return True
        current = current.__cause__ or current.__context__
    return False
