"""CLIP's image preprocessing without the per-image overhead of transformers' PIL backend.

The reference (``CLIPImageProcessor``, PIL backend) resizes the short side with bicubic filtering,
crops the centre, rescales to [0, 1] and normalises, converting each image between PIL and
channel-first numpy arrays and float64 on the way, on one thread. :class:`FastClipPreprocessor`
does the same arithmetic with one Pillow resize per image and one fused multiply-subtract into a
preallocated batch, both of which release the GIL, and spreads a batch over a thread pool sized
to the machine's cores. Its pixels agree with the reference to float rounding (the resize is the
very same Pillow filter, computed for the crop only); ``reducing_gap`` lets Pillow shrink large
images by whole factors first (``Image.reduce``): faster, not bit-equal, and within the agreement
bound (:data:`REDUCING_GAP`: pixel cosine >= 0.9999 on the package photos).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image

__all__ = ["REDUCING_GAP", "FastClipPreprocessor", "cpu_count", "preprocess_pool"]

# Resample values Pillow and transformers share (PILImageResampling is an IntEnum of Pillow's).
_PIL_RESAMPLE = {0: Image.Resampling.NEAREST, 1: Image.Resampling.LANCZOS, 2: Image.Resampling.BILINEAR,
                 3: Image.Resampling.BICUBIC, 4: Image.Resampling.BOX, 5: Image.Resampling.HAMMING}
# Pillow reduces by whole factors while the image stays at least this many times the target
# size; 2.0 kept the package photos' pixels at cosine 0.99998 of the reference (1.5: 0.99997,
# 1.0: 0.9985, under the 0.999 bound).
REDUCING_GAP = 2.0
# Below this many images a thread pool costs more than it saves.
_PARALLEL_FROM = 2

_pool_lock = threading.Lock()
_pool: ThreadPoolExecutor | None = None


def cpu_count() -> int:
    """Cores this process may run on (its affinity where the OS tells it)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def preprocess_pool() -> ThreadPoolExecutor:
    """One process-wide pool, one thread per core, made on first use."""
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=cpu_count(), thread_name_prefix="clipbot-preprocess")
        return _pool


def _forget_pool_in_child() -> None:
    global _pool
    _pool = None  # a forked child has none of the parent's threads; it makes its own


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_pool_in_child)


def _get(config: Any, name: str, default: Any = None) -> Any:
    value = getattr(config, name, default)
    return default if value is None else value


def _size_field(size: Any, name: str) -> Any:
    if size is None:
        return None
    if isinstance(size, dict):
        return size.get(name)
    return getattr(size, name, None)


@dataclass(frozen=True)
class FastClipPreprocessor:
    """Resize the short side to ``shortest_edge``, crop ``crop_height`` x ``crop_width`` from the
    centre, then ``pixel * scale - offset`` per channel: ``(n, 3, H, W)`` float32."""

    shortest_edge: int
    crop_height: int
    crop_width: int
    resample: Image.Resampling
    scale: np.ndarray  # (3, 1, 1) float32: rescale_factor / std
    offset: np.ndarray  # (3, 1, 1) float32: mean / std
    reducing_gap: float | None = None
    parallel: bool = True

    @classmethod
    def from_processor(cls, processor: Any, *, reducing_gap: float | None = None,
                       parallel: bool = True) -> FastClipPreprocessor | None:
        """Read the configuration of a loaded ``CLIPProcessor`` or ``CLIPImageProcessor``; None when
        it asks for something this path does not do (no resize or crop, a fixed resize size,
        padding, a longest edge), so the caller keeps the reference processor for it."""
        ip = getattr(processor, "image_processor", processor)
        if ip is None:
            return None
        if not (_get(ip, "do_resize", True) and _get(ip, "do_center_crop", True)):
            return None
        if _get(ip, "do_pad", False) or _get(ip, "default_to_square", False):
            return None
        size, crop = getattr(ip, "size", None), getattr(ip, "crop_size", None)
        short = _size_field(size, "shortest_edge")
        if not short or any(_size_field(size, k) for k in ("longest_edge", "height", "width", "max_height")):
            return None
        crop_h, crop_w = _size_field(crop, "height"), _size_field(crop, "width")
        if not crop_h or not crop_w or int(crop_h) > int(short) or int(crop_w) > int(short):
            return None  # a crop larger than the resized image pads; the reference does that
        resample = _PIL_RESAMPLE.get(int(_get(ip, "resample", 3)))
        if resample is None:
            return None
        rescale = float(_get(ip, "rescale_factor", 1 / 255)) if _get(ip, "do_rescale", True) else 1.0
        if _get(ip, "do_normalize", True):
            mean = np.broadcast_to(np.asarray(_get(ip, "image_mean", 0.0), np.float64), (3,))
            std = np.broadcast_to(np.asarray(_get(ip, "image_std", 1.0), np.float64), (3,))
        else:
            mean, std = np.zeros(3), np.ones(3)
        return cls(
            shortest_edge=int(short), crop_height=int(crop_h), crop_width=int(crop_w), resample=resample,
            scale=(rescale / std).astype(np.float32).reshape(3, 1, 1),
            offset=(mean / std).astype(np.float32).reshape(3, 1, 1),
            reducing_gap=reducing_gap, parallel=parallel,
        )

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) after the short-side resize, rounded as transformers rounds it."""
        short, long = (width, height) if width <= height else (height, width)
        new_long = int(self.shortest_edge * long / short)
        return (self.shortest_edge, new_long) if width <= height else (new_long, self.shortest_edge)

    def crop_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        top = (height - self.crop_height) // 2
        left = (width - self.crop_width) // 2
        return left, top, left + self.crop_width, top + self.crop_height

    def resize_crop(self, image: Image.Image) -> Image.Image:
        """The resized, centre-cropped RGB image (uint8)."""
        if image.mode != "RGB":
            image = image.convert("RGB")
        width, height = image.size
        size = self.resized_size(width, height)
        left, top, right, bottom = self.crop_box(*size)
        if size == image.size:
            return image.crop((left, top, right, bottom))
        # Only the crop is computed: the box is the crop in source coordinates, so Pillow places
        # each output pixel's filter at the same source position as a full resize would.
        sx, sy = width / size[0], height / size[1]
        return image.resize((right - left, bottom - top), resample=self.resample, reducing_gap=self.reducing_gap,
                            box=(left * sx, top * sy, right * sx, bottom * sy))

    def fill(self, image: Image.Image, out: np.ndarray) -> None:
        """Write one image's pixels into ``out`` (3, H, W) float32."""
        hwc = np.asarray(self.resize_crop(image))
        np.multiply(hwc.transpose(2, 0, 1), self.scale, out=out)
        np.subtract(out, self.offset, out=out)

    def __call__(self, images: Sequence[Image.Image]) -> np.ndarray:
        out = np.empty((len(images), 3, self.crop_height, self.crop_width), np.float32)
        if self.parallel and len(images) >= _PARALLEL_FROM and cpu_count() > 1 and not _on_pool_thread():
            # Pillow's resize and numpy's ufuncs release the GIL: the threads run side by side.
            for future in [preprocess_pool().submit(self.fill, im, out[i]) for i, im in enumerate(images)]:
                future.result()
        else:
            for i, im in enumerate(images):
                self.fill(im, out[i])
        return out


def _on_pool_thread() -> bool:
    # A batch split from inside the pool would wait on its own threads.
    return threading.current_thread().name.startswith("clipbot-preprocess")

