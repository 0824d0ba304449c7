"""Dominant colours: scikit-learn K-Means per image against the vectorised batch of core.media.palette.

    python -m bench.colors           # 640x480 photos at batch 32, 7 timed rounds
    python -m bench.colors --smoke   # one timed round

Reports milliseconds per image of both at batch 32 (wall clock and process CPU time), their
ratios (``speedup``, ``cpu_speedup``), the share of the batch's time that is the BOX thumbnails
alone, and how often the batch's top colour family equals K-Means's on every photo that ships
inside scikit-image, matplotlib and scikit-learn.
"""

from __future__ import annotations

import importlib.util
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import standalone
from core.media.colors import color_families, dominant_colors
from core.media.images import decode_image
from core.media.palette import _thumbnail, dominant_colors_batch

BATCH = 32
PHOTO_SUFFIXES = (".png", ".jpg", ".jpeg")


# Where the installed packages keep their sample pictures, inside each package's folder.
PHOTO_FOLDERS = (("skimage", "data"), ("matplotlib", "mpl-data/sample_data"), ("sklearn", "datasets/images"))


def package_photo_files() -> list[Path]:
    """Every PNG and JPEG in scikit-image's data, matplotlib's sample_data and scikit-learn's images."""
    files: list[Path] = []
    for package, folder in PHOTO_FOLDERS:
        spec = importlib.util.find_spec(package)  # finds the package without importing it (sklearn: ~1 s)
        if spec is None or spec.origin is None:
            continue
        path = Path(spec.origin).parent / folder
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.suffix.lower() in PHOTO_SUFFIXES))
    return files


def top_family_agreement(paths: list[Path]) -> tuple[int, int, list[str]]:
    """(photos whose top colour family is the same from K-Means and the batch, photos, the others' names).

    The top family is ``color_families(colors)[0]``: the family of the largest colour. Photos go
    in as clipbot decodes them (greyscale and palette files become RGB), all in one batch.
    """
    images = [decode_image(p).image for p in paths]
    batch = dominant_colors_batch(images)
    differ = [p.name for p, im, got in zip(paths, images, batch, strict=True)
              if color_families(got)[0] != color_families(dominant_colors(im))[0]]
    return len(paths) - len(differ), len(paths), differ


def run(*, smoke: bool) -> dict[str, Any]:
    # Here, not at the top: they load the CLIP stack, which the tests that import
    # package_photo_files and top_family_agreement do not need.
    from bench.common import p50
    from bench.ingest import generate_photos

    with tempfile.TemporaryDirectory() as tmp:
        images = [decode_image(p).image for p in generate_photos(Path(tmp), BATCH)]
    dominant_colors(images[0])  # scikit-learn's import and first fit are not per-image costs
    dominant_colors_batch(images)
    wall: dict[str, list[float]] = {"kmeans": [], "batch": [], "thumbnails": []}
    cpu: dict[str, list[float]] = {"kmeans": [], "batch": []}
    runs = {"kmeans": lambda: [dominant_colors(im) for im in images],
            "batch": lambda: dominant_colors_batch(images),
            "thumbnails": lambda: [_thumbnail(im, 64) for im in images]}
    # In turns, so that load from elsewhere on the machine weighs on all alike. CPU time (all
    # threads of the process) is reported too: on a shared machine it varies less than the clock.
    for _ in range(1 if smoke else 7):
        for name, fn in runs.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - start)
            if name in cpu:
                cpu[name].append(time.process_time() - start_cpu)
    agree, total, differ = top_family_agreement(package_photo_files())

    def ms(values: list[float]) -> float:
        return 1000 * p50(values) / BATCH

    return {"photos": f"{BATCH} generated 640x480 JPEGs, one batch",
            "kmeans_ms_per_image": ms(wall["kmeans"]), "batch_ms_per_image": ms(wall["batch"]),
            "speedup": p50(wall["kmeans"]) / p50(wall["batch"]),
            "kmeans_cpu_ms_per_image": ms(cpu["kmeans"]), "batch_cpu_ms_per_image": ms(cpu["batch"]),
            "cpu_speedup": p50(cpu["kmeans"]) / p50(cpu["batch"]),
            "thumbnail_share_of_batch": p50(wall["thumbnails"]) / p50(wall["batch"]),
            "agreement": agree / total, "agreement_photos": f"{agree} of {total}", "disagreeing": differ}


def main(argv: list[str] | None = None) -> int:
    return standalone(run, __doc__, argv, smoke_help="one timed round")


if __name__ == "__main__":
    raise SystemExit(main())
