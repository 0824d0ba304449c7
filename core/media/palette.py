"""Dominant colours of a whole batch of images at once, in vectorised numpy.

:func:`core.media.colors.dominant_colors` runs scikit-learn's KMeans per picture: 10 ms or more
an image, most of it Python that holds the GIL, so indexing threads queue behind each other.
Here every image of a batch is BOX-reduced to a small thumbnail and all are clustered together:

* Lloyd's K-Means runs on a colour histogram (16 levels a channel, finer where an image has too
  few occupied cells, such as greyscale pictures), each cell weighted by its pixel count and
  placed at its pixels' mean. A photo's 3,000 pixels become a few hundred weighted points, and
  the cluster sums stay exact: a cell adds its pixels' integer sums.
* One last assignment of the exact pixels to those centres gives the shares and the clusters'
  members, and the colours come out as :func:`~core.media.colors.dominant_colors` builds them:
  a cluster's most common exact colour when it holds half of it, else the cluster's mean.

Seeding is scikit-learn's greedy k-means++ with the reference's own random stream
(``RandomState(0)``, :func:`dominant_colors`'s default seed), the same for every image. On the
photos that ship with scikit-image, matplotlib and scikit-learn it gave the reference's top
colour family more often than other fixed draws did. The reference run with another seed
changes the top family of 0 to 2 of those 31 photos itself: that is the noise floor of agreement.

Arrays are ``(images, points)``, short rows padded with zero weight. Every sum adds integers
(pixel counts, 8-bit values) or runs left to right along one image's row, every other step is
element-wise, so an image gets bit-identical colours alone or anywhere in any batch. A batch
costs a few hundred numpy calls on whole-batch arrays instead of thousands of small ones per
image, and the thumbnails (Pillow) and numpy's loops run without the GIL.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np
from PIL import Image

from core.media.colors import _PALETTE_LAB, _PALETTE_NAMES, DominantColor, rgb_to_hex, rgb_to_lab

# Histogram cells: 4 bits a channel (4,096 cells) leave a photo a few hundred occupied ones.
_COARSE_BITS = 4
# An image with fewer occupied cells (greyscale: 16 at most; flat graphics) is binned finer,
# up to its exact colours, so that its clusters are not cut along 16-level steps.
_MIN_CELLS = 64
# Lloyd iterations at most; a batch stops earlier once no image's assignment changes.
_MAX_ITER = 30
# Images clustered together: arrays stay a few MB and one odd-sized image pads only its own
# chunk. Results do not depend on it (see the module docstring).
_CHUNK = 64
# dominant_colors' default seed: its k-means++ draws (scikit-learn's RandomState stream).
_SEED = 0


def _thumbnail(image: Image.Image, sample_side: int) -> np.ndarray:
    """The image BOX-reduced so its longer side is at most ``sample_side``, as ``(n, 3)`` uint8."""
    # L and RGB are reduced before the RGB conversion (a third of the work for L, and the
    # same per-band arithmetic); other modes convert first, as colors._sample_pixels does.
    img = image if image.mode in ("RGB", "L") else image.convert("RGB")
    factor = math.ceil(max(img.size) / sample_side)
    if factor > 1:
        # Image.reduce averages whole factor x factor blocks: BOX without resize's two
        # weighted passes, half the time of resize(BOX) on a 640x480 photo.
        img = img.reduce(factor)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return np.asarray(img, dtype=np.uint8).reshape(-1, 3)


def _stack(thumbs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Pixels as ``(3, B, N)`` float32 channel planes and ``(B, N)`` int32 24-bit codes, -1 for padding."""
    sizes = [len(t) for t in thumbs]
    n = max(sizes)
    if min(sizes) == n:  # one photo size per batch is the common case: no padding to fill
        rgb = np.stack(thumbs)
    else:
        rgb = np.zeros((len(thumbs), n, 3), dtype=np.uint8)
        for i, t in enumerate(thumbs):
            rgb[i, : len(t)] = t
    planes = np.ascontiguousarray(np.moveaxis(rgb, -1, 0), dtype=np.float32)
    c = rgb.astype(np.int32)
    codes = (c[..., 0] << 16) | (c[..., 1] << 8) | c[..., 2]
    if min(sizes) < n:
        codes[np.arange(n)[None, :] >= np.array(sizes)[:, None]] = -1
    return planes, codes


def _cells(codes: np.ndarray, bits: int) -> np.ndarray:
    """Each 24-bit colour's histogram cell at ``bits`` bits a channel (padding's is garbage)."""
    shift, mask = 8 - bits, (1 << bits) - 1
    r, g, b = (codes >> (16 + shift)) & mask, (codes >> (8 + shift)) & mask, (codes >> shift) & mask
    return np.asarray((r << (2 * bits)) | (g << bits) | b)


def _histograms(planes: np.ndarray, codes: np.ndarray, min_cells: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per image, its occupied cells' RGB sums ``(m, 3)`` and pixel counts ``(m,)``, by cell.

    An image with fewer than ``min_cells`` coarse cells is binned finer (:func:`_fine_histogram`).
    """
    b = len(codes)
    per_image = 1 << (3 * _COARSE_BITS)
    valid = codes >= 0
    padded = not valid.all()  # no padding (one photo size) saves a masked copy of each plane

    def real(a: np.ndarray) -> np.ndarray:
        return a[valid] if padded else a.ravel()

    # One bincount for the whole batch: image i owns cells [i * 4096, (i + 1) * 4096).
    flat = real((np.arange(b, dtype=np.int32) * per_image)[:, None] + _cells(codes, _COARSE_BITS))
    counts = np.bincount(flat, minlength=b * per_image)
    occupied = counts > 0
    # Sums only for occupied cells: bincount into a few thousand bins, not B * 4,096.
    compact = np.cumsum(occupied, dtype=np.int32)[flat] - 1
    size = int(np.count_nonzero(occupied))
    sums = np.stack([np.bincount(compact, weights=real(planes[c]), minlength=size) for c in range(3)], axis=-1)
    bounds = np.cumsum(occupied.reshape(b, per_image).sum(axis=1))
    counts = counts[occupied].astype(np.float64)
    out: list[tuple[np.ndarray, np.ndarray]] = []
    for i in range(b):
        lo, hi = (int(bounds[i - 1]) if i else 0), int(bounds[i])
        if hi - lo >= min_cells:
            out.append((sums[lo:hi], counts[lo:hi]))
        else:
            out.append(_fine_histogram(codes[i][valid[i]], min_cells))
    return out


def _fine_histogram(codes: np.ndarray, min_cells: int) -> tuple[np.ndarray, np.ndarray]:
    """The coarsest finer histogram with ``min_cells`` cells, else the exact colours (8 bits)."""
    for bits in (5, 6, 8):
        uniq, inverse, counts = np.unique(_cells(codes, bits), return_inverse=True, return_counts=True)
        if len(uniq) >= min_cells or bits == 8:
            break
    sums = np.stack([np.bincount(inverse, weights=(codes >> s) & 255, minlength=len(uniq)) for s in (16, 8, 0)],
                    axis=-1)
    return sums, counts.astype(np.float64)


def _pad(hists: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Histograms as ``(3, B, M)`` means, ``(3, B, M)`` integer sums and ``(B, M)`` weights."""
    m = max(len(w) for _, w in hists)
    sums = np.zeros((3, len(hists), m))
    weights = np.zeros((len(hists), m))
    for i, (s, w) in enumerate(hists):
        sums[:, i, : len(w)] = s.T
        weights[i, : len(w)] = w
    # float32 means: the distances only pick a nearest centre, and they cost half the memory
    # traffic of float64. The sums stay float64, where integers up to 2**53 are exact.
    return (sums / np.maximum(weights, 1.0)).astype(np.float32), sums, weights


def _row_total(values: np.ndarray) -> np.ndarray:
    # A left-to-right sum: trailing zero padding cannot change it, unlike np.sum's pairwise
    # blocks, whose grouping depends on the row length (and so on the other images).
    return np.asarray(np.cumsum(values, axis=-1)[..., -1])


@functools.lru_cache(maxsize=16)
def _draws(k: int) -> np.ndarray:
    """The k-means++ draws, ``(k, trials)``: scikit-learn's for ``random_state=_SEED``.

    It draws one number for the first centre, then ``2 + log k`` candidates a centre, from
    one legacy RandomState stream (a stream numpy never changes).
    """
    trials = 2 + int(math.log(k))
    u = np.random.RandomState(_SEED).random_sample(1 + (k - 1) * trials)
    out = np.zeros((k, trials))
    out[0, 0] = u[0]
    out[1:] = u[1:].reshape(k - 1, trials)
    out.flags.writeable = False  # shared by every call (cached)
    return out


def _seed(planes: np.ndarray, weights: np.ndarray, k: int) -> np.ndarray:
    """Greedy k-means++ centres, ``(B, k, 3)``, with the same draws for every row."""
    draws = _draws(k)
    rows = np.arange(weights.shape[0])

    def pick(mass: np.ndarray, u: np.ndarray) -> np.ndarray:
        # Index of the first point whose running mass passes u * total: a weighted draw per
        # row. Points of zero mass (padding, already chosen) can never be first to pass it.
        running = np.cumsum(mass, axis=1)
        return np.asarray(np.argmax(running[:, None, :] > running[:, -1:, None] * u[None, :, None], axis=-1))

    def sq_dist(idx: np.ndarray) -> np.ndarray:  # (B, t, M): every point to each of the points idx (B, t)
        c = planes[:, rows[:, None], idx][..., None]  # (3, B, t, 1)
        d: np.ndarray = (planes[0][:, None, :] - c[0]) ** 2
        d += (planes[1][:, None, :] - c[1]) ** 2
        d += (planes[2][:, None, :] - c[2]) ** 2
        return d

    chosen = np.empty((len(rows), k), dtype=np.int64)
    chosen[:, 0] = pick(weights, draws[0, :1])[:, 0]
    closest = sq_dist(chosen[:, :1])[:, 0]
    for j in range(1, k):
        candidates = pick(weights * closest, draws[j])  # (B, trials)
        merged = np.minimum(closest[:, None, :], sq_dist(candidates))  # (B, trials, M)
        # The candidate that leaves the least weighted squared distance, the first of equals.
        best = np.argmin(_row_total(weights[:, None, :] * merged), axis=1)
        chosen[:, j] = candidates[rows, best]
        closest = merged[rows, best]
    return np.moveaxis(planes[:, rows[:, None], chosen], 0, -1)


def _assign(planes: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Each point's nearest of the ``(B, k, 3)`` centres, ``(B, N)``; the first of equals wins."""
    c = np.moveaxis(centres.astype(planes.dtype), -1, 0)[..., None]  # (3, B, k, 1)
    # All k distances in three broadcast passes: per-cluster loops cost ~3x the numpy calls.
    d = (planes[0][:, None, :] - c[0]) ** 2
    d += (planes[1][:, None, :] - c[1]) ** 2
    d += (planes[2][:, None, :] - c[2]) ** 2
    nearest = d.min(axis=1)
    k = centres.shape[1]
    labels = np.full(nearest.shape, k - 1, dtype=np.int64)
    for j in range(k - 2, -1, -1):  # downwards, so the smallest index of equals stays
        np.copyto(labels, j, where=d[:, j] == nearest)
    return labels


def _lloyd(planes: np.ndarray, sums: np.ndarray, weights: np.ndarray, centres: np.ndarray) -> np.ndarray:
    """Weighted Lloyd iterations, per row until its assignment stops changing, at most :data:`_MAX_ITER`."""
    k = centres.shape[1]
    centres = centres.copy()
    active = np.arange(len(weights))  # rows still moving
    p, s, w = planes, sums, weights
    labels = np.full(weights.shape, -1)
    for _ in range(_MAX_ITER):
        new = _assign(p, centres[active])
        moving = np.flatnonzero((new != labels).any(axis=1))
        if len(moving) < len(active):
            # A row whose assignment did not change is at its fixed point: later rounds would
            # leave it as it is, so it leaves the batch and the others iterate on less data.
            if not len(moving):
                break
            active, new = active[moving], new[moving]
            p, s, w = p[:, moving], s[:, moving], w[moving]
        labels = new
        b = len(active)
        # The weights and sums are integers, so these sums are exact in any order.
        idx = ((np.arange(b) * k)[:, None] + labels).ravel()
        cw = np.bincount(idx, weights=w.ravel(), minlength=b * k).reshape(b, k, 1)
        cs = np.stack([np.bincount(idx, weights=s[c].ravel(), minlength=b * k) for c in range(3)], axis=-1)
        # An emptied cluster keeps its centre (scikit-learn would move it; rare on photos, and
        # the final assignment drops a cluster that stays empty).
        centres[active] = np.where(cw > 0, cs.reshape(b, k, 3) / np.maximum(cw, 1.0), centres[active])
    return centres


def _cluster_stats(codes: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """Per (image, cluster), ``(B, k)`` each: pixel count, R, G and B sums, most common colour, its count.

    One sort of each row by (cluster, colour) gives all of them as sums over runs: integers, so
    exact. Ties for the most common colour go to the smallest code, as in colors._representatives,
    whose argmax runs over its distinct colours in code order.
    """
    b, n = codes.shape
    dtype = np.int32 if k < 128 else np.int64  # int32 keys sort ~3x faster than int64
    pad = np.iinfo(dtype).max  # above every real key (cluster < 127 in the top bits): sorts last
    keys = np.where(codes >= 0, (labels.astype(dtype) << 24) | codes, pad)
    keys.sort(axis=1)
    flat = keys.ravel()
    new_run = np.empty(len(flat), dtype=bool)
    new_run[0] = True
    np.not_equal(flat[1:], flat[:-1], out=new_run[1:])
    new_run[::n] = True  # a run never spans two images
    starts = np.flatnonzero(new_run)
    lengths = np.diff(starts, append=len(flat))
    run_keys = flat[starts].astype(np.int64)
    real = run_keys != pad
    starts, lengths, run_keys = starts[real], lengths[real], run_keys[real]
    group = (starts // n) * k + (run_keys >> 24)
    colour = run_keys & 0xFFFFFF
    firsts = np.flatnonzero(np.diff(group, prepend=-1))  # runs are sorted by group, then colour
    size = b * k
    out = [np.zeros(size, dtype=np.int64) for _ in range(6)]
    out[0][group[firsts]] = np.add.reduceat(lengths, firsts)
    for c, shift in enumerate((16, 8, 0), start=1):
        out[c][group[firsts]] = np.add.reduceat(lengths * ((colour >> shift) & 255), firsts)
    longest = np.maximum.reduceat(lengths, firsts)
    # A group's first run of its longest length: its most common colour, smallest code of equals.
    winners = np.flatnonzero(lengths == np.repeat(longest, np.diff(firsts, append=len(lengths))))
    first = winners[np.diff(group[winners], prepend=-1) != 0]
    out[4][group[first]] = colour[first]
    out[5][group[first]] = lengths[first]
    return tuple(o.reshape(b, k) for o in out)


def _color_names(rgb: np.ndarray) -> list[str]:
    """:func:`~core.media.colors.color_name` of each ``(n, 3)`` colour, in one array pass.

    The same palette, Lab conversion and squared differences; the three channels are added
    left to right, which is what color_name's ``np.sum(axis=1)`` over three values does (an
    explicit sum, since numpy's reduction over a length-3 axis of a 3-D array is ~10x slower).
    """
    sq = (_PALETTE_LAB[None, :, :] - rgb_to_lab(rgb)[:, None, :]) ** 2
    d = (sq[..., 0] + sq[..., 1]) + sq[..., 2]
    return [_PALETTE_NAMES[int(i)] for i in np.argmin(d, axis=1)]


def _cluster(planes: np.ndarray, codes: np.ndarray, hists: list[tuple[np.ndarray, np.ndarray]], k: int,
             ) -> tuple[np.ndarray, np.ndarray]:
    """K-Means on the histograms, then the exact pixels: ``(B, k, 3)`` colours, ``(B, k)`` pixel counts."""
    means, sums, weights = _pad(hists)
    labels = _assign(planes, _lloyd(means, sums, weights, _seed(means, weights, k)))
    counts, r, g, b, top_code, top_count = _cluster_stats(codes, labels, k)
    mean = np.stack([r, g, b], axis=-1) / np.maximum(counts, 1)[..., None]
    # colors._representatives: a flat area's exact colour when it holds half the cluster, not
    # the mean that the blended pixels at its edges would pull off it.
    top_rgb = np.stack([(top_code >> 16) & 255, (top_code >> 8) & 255, top_code & 255], axis=-1)
    return np.where((top_count * 2 >= counts)[..., None], top_rgb, mean), counts


def dominant_colors_batch(
    images: Sequence[Image.Image], k: int = 5, *, sample_side: int = 64,
) -> list[list[DominantColor]]:
    """The ``k`` main colours of each image, as :func:`core.media.colors.dominant_colors` reports them.

    Each list is largest share first (ties by hex) with percents summing to about 100; an
    image with fewer than ``k`` distinct colours gets that many. A cluster's colour is its
    most common exact pixel colour when that holds half of it, else its mean. Images are
    BOX-reduced so the longer side is at most ``sample_side``. Deterministic: an image gets
    the same colours every time, alone or anywhere in any batch. An empty batch gives ``[]``.
    """
    if k < 1:
        raise ValueError(f"k must be at least 1, got {k}")
    if sample_side < 1:
        raise ValueError(f"sample_side must be at least 1, got {sample_side}")
    out: list[list[DominantColor]] = []
    for start in range(0, len(images), _CHUNK):
        out.extend(_chunk(images[start:start + _CHUNK], k, sample_side))
    return out


def _chunk(images: Sequence[Image.Image], k: int, sample_side: int) -> list[list[DominantColor]]:
    planes, codes = _stack([_thumbnail(im, sample_side) for im in images])
    hists = _histograms(planes, codes, min_cells=max(_MIN_CELLS, 2 * k))
    colours: list[list[list[int]]] = []
    shares: list[list[float]] = []
    clustered: list[int] = []
    for i, (sums, weights) in enumerate(hists):
        if k == 1:  # one cluster: the mean of everything, as the reference has it
            colours.append([np.rint(sums.sum(axis=0) / weights.sum()).astype(np.int64).tolist()])
            shares.append([float(weights.sum())])
        elif len(weights) <= k:  # only exact-colour histograms are this small: a cluster each
            colours.append(np.rint(sums / weights[:, None]).astype(np.int64).tolist())
            shares.append(weights.tolist())
        else:
            colours.append([])
            shares.append([])
            clustered.append(i)
    if clustered:
        every = len(clustered) == len(images)  # the common case: no copies of the pixels
        rep, counts = _cluster(planes if every else planes[:, clustered], codes if every else codes[clustered],
                               [hists[i] for i in clustered], k)
        rounded = np.clip(np.rint(rep), 0, 255).astype(np.int64).tolist()
        for row, i in enumerate(clustered):
            colours[i], shares[i] = rounded[row], counts[row].astype(np.float64).tolist()
    names = iter(_color_names(np.array([c for cs in colours for c in cs], dtype=np.int64)))
    return [_result(cs, ws, [next(names) for _ in cs]) for cs, ws in zip(colours, shares, strict=True)]


def _result(rgbs: list[list[int]], weights: list[float], names: list[str]) -> list[DominantColor]:
    total = float(sum(weights))
    out: list[DominantColor] = []
    for (r, g, b), w, name in zip(rgbs, weights, names, strict=True):
        if w > 0:
            out.append(DominantColor(hex=rgb_to_hex((r, g, b)), name=name, percent=100.0 * w / total, rgb=(r, g, b)))
    # Ties broken by colour so equal shares still come back in one fixed order.
    out.sort(key=lambda c: (-c.percent, c.hex))
    return out
