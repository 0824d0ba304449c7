"""PP-OCRv4 text detection and recognition run with onnxruntime, numpy, scipy and Pillow.

The same steps as the ``rapidocr-onnxruntime`` package (DB detection, rectangle crops, CTC
recognition) without its OpenCV, Shapely and pyclipper: ``opencv-python`` needs the system's libGL
and GLib, which slim images such as ``python:3.11-slim`` lack. Only the package's ONNX files are used.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

DETECTOR = "ch_PP-OCRv4_det_infer.onnx"
RECOGNISER = "ch_PP-OCRv4_rec_infer.onnx"
# DB post-processing, as PaddleOCR and the package set it.
PIXEL_THRESHOLD = 0.3  # a map value above this is text
BOX_THRESHOLD = 0.5  # a region's mean map value needed to keep it
UNCLIP_RATIO = 1.6  # regions are grown by area * ratio / perimeter: the map marks a shrunk text core
MIN_SIDE = 3
MAX_REGIONS = 1000
# Recognition: crops are 48 pixels high and at least 320 wide; six run per model call.
REC_HEIGHT = 48
REC_MIN_WIDTH = 320
REC_BATCH = 6
# Very wide pictures (over 8:1) and tiny ones are padded before detection, like the package does.
MAX_WIDTH_RATIO = 8
MIN_PADDED = 32

Box = np.ndarray  # (4, 2) float32: top-left, top-right, bottom-right, bottom-left


def new_session(path: Path, threads: int) -> Any:
    """An onnxruntime CPU session for one model, with ``threads`` intra-op threads that sleep when idle."""
    # Through import_module: onnxruntime ships no type information, and may be missing (an extra).
    ort: Any = importlib.import_module("onnxruntime")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # errors only
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Input shapes change with every picture: an arena would keep the largest ever allocated.
    options.enable_cpu_mem_arena = False
    # Idle threads spinning for work would take cores from CLIP, which shares the machine.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])


def characters(session: Any) -> list[str]:
    """The recogniser's alphabet, from its metadata: CTC blank first, space last (as trained)."""
    return ["", *session.get_modelmeta().custom_metadata_map["character"].splitlines(), " "]


def _normalised(image: Image.Image) -> np.ndarray:
    """RGB to the models' input: BGR (they were trained on OpenCV's images), scaled to [-1, 1], CHW."""
    pixels: np.ndarray = np.asarray(image, dtype=np.float32)[:, :, ::-1]
    normalised: np.ndarray = (pixels / 127.5 - 1.0).transpose(2, 0, 1)
    return np.ascontiguousarray(normalised, dtype=np.float32)


def _padded(image: Image.Image) -> tuple[Image.Image, int, int]:
    """``image`` on a black canvas when very wide or tiny (the detector needs room), and its offset."""
    width = max(image.width, MIN_PADDED)
    height = max(image.height, MIN_PADDED, math.ceil(image.width / MAX_WIDTH_RATIO))
    if (width, height) == image.size:
        return image, 0, 0
    left, top = (width - image.width) // 2, (height - image.height) // 2
    canvas = Image.new("RGB", (width, height))
    canvas.paste(image, (left, top))
    return canvas, left, top


def detect(session: Any, image: Image.Image, side: int) -> list[Box]:
    """Quadrilaterals around the text in an RGB ``image``, in its pixels (unordered)."""
    padded, left, top = _padded(image)
    ratio = min(1.0, side / max(padded.size))
    # The network wants sides that are multiples of 32.
    width = max(32, round(int(padded.width * ratio) / 32) * 32)
    height = max(32, round(int(padded.height * ratio) / 32) * 32)
    inputs = _normalised(padded.resize((width, height), Image.Resampling.BILINEAR))[np.newaxis]
    probability = session.run(None, {session.get_inputs()[0].name: inputs})[0][0, 0]
    boxes = []
    for box in _regions(probability):
        box[:, 0] = np.clip(np.round(box[:, 0] / width * padded.width), 0, padded.width) - left
        box[:, 1] = np.clip(np.round(box[:, 1] / height * padded.height), 0, padded.height) - top
        box[:, 0] = np.clip(box[:, 0], 0, image.width - 1)
        box[:, 1] = np.clip(box[:, 1], 0, image.height - 1)
        box = _clockwise(box)
        if np.linalg.norm(box[0] - box[1]) > MIN_SIDE and np.linalg.norm(box[0] - box[3]) > MIN_SIDE:
            boxes.append(box)
    return boxes


def _regions(probability: np.ndarray) -> list[Box]:
    """DB post-processing: the text regions of a probability map, as grown rectangles in its pixels."""
    # scipy comes with scikit-learn; it ships no type information.
    ndimage: Any = importlib.import_module("scipy.ndimage")
    mask = probability > PIXEL_THRESHOLD
    # A 2x2 dilation, as PaddleOCR's: joins characters whose cores just miss each other.
    grown = mask.copy()
    grown[1:, :] |= mask[:-1, :]
    dilated = grown.copy()
    dilated[:, 1:] |= grown[:, :-1]
    labels, _ = ndimage.label(dilated, structure=np.ones((3, 3), dtype=bool))
    boxes = []
    for index, found in enumerate(ndimage.find_objects(labels)[:MAX_REGIONS], start=1):
        if found is None:
            continue
        rows, cols = found
        member = labels[found] == index
        box, short = _min_area_rect(_outline(member, cols.start, rows.start))
        if short < MIN_SIDE or _mean_inside(probability, box) < BOX_THRESHOLD:
            continue
        # Growing a rectangle by d on every side is what offsetting it does, to its bounding rectangle.
        w, h = np.linalg.norm(box[1] - box[0]), np.linalg.norm(box[3] - box[0])
        d = w * h * UNCLIP_RATIO / (2 * (w + h))
        along, across = (box[1] - box[0]) / max(w, 1e-6), (box[3] - box[0]) / max(h, 1e-6)
        grown_box = box + np.array([-along - across, along - across, along + across, -along + across]) * d
        if min(w, h) + 2 * d < MIN_SIDE + 2:
            continue
        boxes.append(grown_box.astype(np.float32))
    return boxes


def _outline(member: np.ndarray, x0: int, y0: int) -> np.ndarray:
    """Each row's leftmost and rightmost pixel of a region: their convex hull is the region's."""
    ys = np.flatnonzero(member.any(axis=1))
    lefts = member[ys].argmax(axis=1)
    rights = member.shape[1] - 1 - member[ys, ::-1].argmax(axis=1)
    points = np.concatenate([np.stack([lefts, ys], 1), np.stack([rights, ys], 1)]).astype(np.float64)
    return points + np.array([x0, y0], dtype=np.float64)


def _hull(points: np.ndarray) -> np.ndarray:
    """Convex hull, counter-clockwise (Andrew's monotone chain)."""
    pts = sorted({(float(x), float(y)) for x, y in points})
    if len(pts) < 3:
        return np.array(pts)

    def half(seq: list[tuple[float, float]]) -> list[tuple[float, float]]:
        out: list[tuple[float, float]] = []
        for p in seq:
            while len(out) >= 2 and ((out[-1][0] - out[-2][0]) * (p[1] - out[-2][1])
                                     - (out[-1][1] - out[-2][1]) * (p[0] - out[-2][0])) <= 0:
                out.pop()
            out.append(p)
        return out

    lower, upper = half(pts), half(pts[::-1])
    return np.array(lower[:-1] + upper[:-1])


def _min_area_rect(points: np.ndarray) -> tuple[Box, float]:
    """The smallest rectangle around ``points`` (rotating calipers), ordered like :func:`_clockwise`,
    and its shorter side."""
    hull = _hull(points)
    if len(hull) < 3:
        lo, hi = points.min(axis=0), points.max(axis=0)
        rect = np.array([[lo[0], lo[1]], [hi[0], lo[1]], [hi[0], hi[1]], [lo[0], hi[1]]])
        return _clockwise(rect), float(min(hi - lo))
    edges = np.roll(hull, -1, axis=0) - hull
    angles = np.arctan2(edges[:, 1], edges[:, 0])
    axes = np.stack([np.cos(angles), np.sin(angles)], axis=1)  # each edge's direction
    normals = np.stack([-axes[:, 1], axes[:, 0]], axis=1)
    u, v = axes @ hull.T, normals @ hull.T  # (edges, points)
    areas = (u.max(1) - u.min(1)) * (v.max(1) - v.min(1))
    best = int(np.argmin(areas))
    a, n = axes[best], normals[best]
    u0, u1, v0, v1 = u[best].min(), u[best].max(), v[best].min(), v[best].max()
    rect = np.array([a * s + n * t for s, t in ((u0, v0), (u1, v0), (u1, v1), (u0, v1))])
    return _clockwise(rect), float(min(u1 - u0, v1 - v0))


def _clockwise(points: np.ndarray) -> Box:
    """Top-left, top-right, bottom-right, bottom-left: the two leftmost points are the left side."""
    by_x = points[np.argsort(points[:, 0], kind="stable")]
    left = by_x[:2][np.argsort(by_x[:2, 1], kind="stable")]
    right = by_x[2:][np.argsort(by_x[2:, 1], kind="stable")]
    return np.array([left[0], right[0], right[1], left[1]], dtype=np.float32)


def _mean_inside(probability: np.ndarray, box: Box) -> float:
    """The mean map value inside ``box`` (PaddleOCR's "fast" score)."""
    h, w = probability.shape
    x0, x1 = int(np.clip(np.floor(box[:, 0].min()), 0, w - 1)), int(np.clip(np.ceil(box[:, 0].max()), 0, w - 1))
    y0, y1 = int(np.clip(np.floor(box[:, 1].min()), 0, h - 1)), int(np.clip(np.ceil(box[:, 1].max()), 0, h - 1))
    canvas = Image.new("L", (x1 - x0 + 1, y1 - y0 + 1))
    ImageDraw.Draw(canvas).polygon([(float(x) - x0, float(y) - y0) for x, y in box.astype(np.int32)], fill=1)
    inside = np.asarray(canvas, dtype=bool)
    region = probability[y0:y1 + 1, x0:x1 + 1]
    return float(region[inside].mean()) if inside.any() else 0.0


def crop(image: Image.Image, box: Box) -> Image.Image:
    """The text in ``box`` as an upright strip (a tall one is turned to read left to right)."""
    width = int(max(np.linalg.norm(box[0] - box[1]), np.linalg.norm(box[2] - box[3])))
    height = int(max(np.linalg.norm(box[0] - box[3]), np.linalg.norm(box[1] - box[2])))
    width, height = max(width, 1), max(height, 1)
    # PIL's QUAD takes the source's top-left, bottom-left, bottom-right and top-right corners.
    quad = tuple(float(c) for i in (0, 3, 2, 1) for c in box[i])
    strip = image.transform((width, height), Image.Transform.QUAD, quad, Image.Resampling.BICUBIC)
    if height / width >= 1.5:  # vertical text, most likely written top to bottom
        strip = strip.transpose(Image.Transpose.ROTATE_90)
    return strip


def recognise(session: Any, alphabet: Sequence[str], strips: Sequence[Image.Image]) -> list[tuple[str, float]]:
    """Text and confidence (mean probability of its characters) for each strip, in order."""
    results: list[tuple[str, float]] = [("", 0.0)] * len(strips)
    # Strips of like proportions share a batch, so little of each batch is padding.
    order = sorted(range(len(strips)), key=lambda i: strips[i].width / strips[i].height)
    name = session.get_inputs()[0].name
    for start in range(0, len(order), REC_BATCH):
        batch = order[start:start + REC_BATCH]
        ratio = max(REC_MIN_WIDTH / REC_HEIGHT, *(strips[i].width / strips[i].height for i in batch))
        width = int(REC_HEIGHT * ratio)
        inputs = np.zeros((len(batch), 3, REC_HEIGHT, width), dtype=np.float32)
        for row, i in enumerate(batch):
            fitted = min(width, math.ceil(REC_HEIGHT * strips[i].width / strips[i].height))
            inputs[row, :, :, :fitted] = _normalised(strips[i].resize((fitted, REC_HEIGHT), Image.Resampling.BILINEAR))
        probabilities = session.run(None, {name: inputs})[0]
        for row, i in enumerate(batch):
            results[i] = _ctc_decode(probabilities[row], alphabet)
    return results


def _ctc_decode(probabilities: np.ndarray, alphabet: Sequence[str]) -> tuple[str, float]:
    """Greedy CTC: the best symbol per step, repeats merged, blanks dropped."""
    best = probabilities.argmax(axis=1)
    keep = best != 0
    keep[1:] &= best[1:] != best[:-1]
    if not keep.any():
        return "", 0.0
    text = "".join(alphabet[k] for k in best[keep])
    return text, float(probabilities.max(axis=1)[keep].mean())
