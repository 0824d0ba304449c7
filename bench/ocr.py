"""OCR: how well and how fast the text reader reads generated memes, screenshots, signs and receipts.

Accuracy is 1 - the edit distance between the folded ground truth and the folded reading, over
the longer of the two (so spacing, case and punctuation do not count: search ignores them too).
"""

from __future__ import annotations

import statistics
import time
from collections import defaultdict
from typing import Any

from core.models.ocr import DEFAULT_DETECT_SIDE, DEFAULT_THREADS, TextReader, text_of
from core.search.ocr_text import fold, phrase_in
from tests.ocr_pictures import make_samples


def edit_distance(a: str, b: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions, one each."""
    if len(a) < len(b):
        a, b = b, a
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i]
        for j, cb in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (ca != cb)))
        previous = current
    return previous[-1]


def char_accuracy(truth: str, read: str) -> float:
    """1 - normalised edit distance of the folded texts; 1.0 when both fold to nothing."""
    a, b = fold(truth), fold(read)
    if not a and not b:
        return 1.0
    return 1.0 - edit_distance(a, b) / max(len(a), len(b))


def spaced_accuracy(truth: str, read: str) -> float:
    """Like :func:`char_accuracy`, but on casefolded text with its spaces (runs of them as one) and
    punctuation: what a caption showing the text would get right, dropped spaces included."""
    a, b = " ".join(truth.casefold().split()), " ".join(read.casefold().split())
    if not a and not b:
        return 1.0
    return 1.0 - edit_distance(a, b) / max(len(a), len(b))


def run(*, smoke: bool, threads: int | None = None, detect_side: int | None = None) -> dict[str, Any]:
    """Read every sample once (after one unmeasured warm-up read) and report per kind and overall."""
    samples = make_samples(2 if smoke else 10, seed=0)
    reader = TextReader(threads=threads or DEFAULT_THREADS, detect_side=detect_side or DEFAULT_DETECT_SIDE)
    started = time.perf_counter()
    reader.load()
    load_s = time.perf_counter() - started
    reader.read(samples[0].image)  # onnxruntime plans its first shapes here; not a picture's cost
    accuracy: dict[str, list[float]] = defaultdict(list)
    spaced: dict[str, list[float]] = defaultdict(list)
    seconds: dict[str, list[float]] = defaultdict(list)
    hits: dict[str, list[bool]] = defaultdict(list)
    false_text = 0
    # CPU time as well as wall time: on a shared machine the first tells what a picture costs.
    cpu_started = time.process_time()
    for sample in samples:
        start = time.perf_counter()
        lines = reader.read(sample.image)
        seconds[sample.kind].append(time.perf_counter() - start)
        read = text_of(lines)
        assert all(0.0 <= line.confidence <= 1.0 for line in lines)
        if sample.kind == "none":
            false_text += bool(lines)
            continue
        accuracy[sample.kind].append(char_accuracy(sample.text, read))
        spaced[sample.kind].append(spaced_accuracy(sample.text, read))
        hits[sample.kind].extend(phrase_in(phrase, read) for phrase in sample.phrases)
    cpu_s = time.process_time() - cpu_started
    total_s = sum(sum(s) for s in seconds.values())
    all_hits = [h for kind in hits.values() for h in kind]
    return {
        "model": reader.model_id, "threads": reader.threads, "detect_side": reader.detect_side,
        "pictures": len(samples), "load_s": load_s, "pictures_per_s": len(samples) / total_s,
        "cpu_s_per_picture": cpu_s / len(samples),
        "char_accuracy": statistics.fmean(a for kind in accuracy.values() for a in kind),
        "char_accuracy_by_kind": {kind: statistics.fmean(v) for kind, v in accuracy.items()},
        "char_accuracy_with_spaces_by_kind": {kind: statistics.fmean(v) for kind, v in spaced.items()},
        "phrase_hit_rate": sum(all_hits) / len(all_hits),
        "phrase_hit_rate_by_kind": {kind: sum(v) / len(v) for kind, v in hits.items() if v},
        "seconds_per_picture_by_kind": {kind: statistics.fmean(v) for kind, v in seconds.items()},
        "text_found_in_photos_without_text": false_text,
    }


if __name__ == "__main__":
    import argparse
    import json

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--detect-side", type=int)
    args = parser.parse_args()
    print(json.dumps(run(smoke=args.smoke, threads=args.threads, detect_side=args.detect_side), indent=2))
