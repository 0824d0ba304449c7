"""OCR search: phrase queries against a gallery of generated pictures with text among distractors.

The gallery is indexed as `clipbot index` does (vectors first, with the zero-cost encoder of
bench.pipeline: CLIP's ranking is not what is measured here), then the text pass reads every
picture, timed on its own; then each sample's phrases (what a user would type: "one does not
simply", "wifi password") go through `/find`'s search. Recall@1: the top result is a picture whose
text holds the phrase (memes repeat in the bank, so another copy of the same meme counts).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench.ingest import generate_photos
from bench.pipeline import ZeroCostEncoder
from bot.composition import build_engine
from bot.settings import Settings
from core.gallery import TextInPictures, ingest, run_enrichment
from core.gallery.sources import IngestItem
from core.search.ocr_text import fold
from tests.ocr_pictures import PHOTOS, OcrSample, make_samples

# Distractors: generated photos (shapes, no text) and the package photos known to hold none.
DISTRACTORS = 50


async def _measure(folder: Path, data: Path, samples: list[OcrSample], distractors: list[Path]) -> dict[str, Any]:
    settings = Settings(clip_model="bench/zero-cost", data_dir=data, caption_model="none", ocr="rapidocr",
                        _env_file=None)  # type: ignore[call-arg]
    paths = []
    for n, sample in enumerate(samples):
        paths.append(folder / f"{n:03d}-{sample.kind}.jpg")
        sample.image.convert("RGB").save(paths[-1], quality=90)
    async with build_engine(settings, ZeroCostEncoder(), captioner=None) as engine:
        added = await ingest(engine, [IngestItem(p) for p in [*paths, *distractors]], collection="global")
        start, cpu = time.perf_counter(), time.process_time()
        read = await run_enrichment(engine, TextInPictures(), collection="global")
        pass_s, pass_cpu = time.perf_counter() - start, time.process_time() - cpu
        ids = {Path(str(r.source_path)).name: r.id for r in await engine.list_images("global")}
        truth = {ids[p.name]: fold(s.text) for p, s in zip(paths, samples, strict=True)}
        hits: dict[str, list[bool]] = defaultdict(list)
        shown: list[bool] = []
        latency: list[float] = []
        for sample in samples:
            for phrase in sample.phrases:
                start = time.perf_counter()
                results = await engine.find_text(phrase, k=1)
                latency.append(time.perf_counter() - start)
                top = results[0] if results else None
                hit = top is not None and fold(phrase) in truth.get(top.id, "")
                hits[sample.kind].append(hit)
                shown.append(hit and bool(top and top.matched_text))
    everything = [h for kind in hits.values() for h in kind]
    return {
        "pictures": added.added, "with_text": len(samples), "distractors": len(distractors),
        "phrases": len(everything), "recall_at_1": sum(everything) / len(everything),
        "recall_at_1_by_kind": {kind: sum(v) / len(v) for kind, v in hits.items()},
        "matched_text_shown": sum(shown) / max(1, sum(everything)),
        "text_pass_pictures_per_s": read.done / pass_s, "text_pass_cpu_s_per_picture": pass_cpu / read.done,
        "find_p50_ms": 1000 * statistics.median(latency),
    }


def run(*, smoke: bool) -> dict[str, Any]:
    samples = [s for s in make_samples(1 if smoke else 6, seed=1) if s.kind != "none"]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        (root / "pictures").mkdir()
        generated = generate_photos(root / "distractors", 5 if smoke else DISTRACTORS - len(PHOTOS))
        return asyncio.run(_measure(root / "pictures", root / "data", samples, [*generated, *PHOTOS]))


if __name__ == "__main__":
    import json

    print(json.dumps(run(smoke=False), indent=2))
