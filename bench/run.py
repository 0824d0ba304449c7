"""Runs every benchmark and writes bench/results/latest.json, latest.md and PNG plots.

    python -m bench.run               # full: ViT-B/32 random weights, 1M vectors (about 10 minutes)
    python -m bench.run --smoke       # tiny sizes, for CI: proves the suite still runs
    python -m bench.run --only soak   # the bot through the fake Telegram API: 2000 mixed requests
    python -m bench.run --only startup  # `clipbot search` from the command to its first result
    python -m bench.run --only postgres  # the PostgreSQL backend at 100k vectors, against SQLite
    python -m bench.run --only captions  # BLIP-base (random weights) at batch 1/8, fp32/int8; the caption pass
    python -m bench.run --only calibration  # 256 nearest() against one nearest_many() at 50k, SQLite and PostgreSQL
    python -m bench.run --only pipeline  # `clipbot index` with a zero-cost encoder: everything but the model
    python -m bench.run --only ocr    # PP-OCRv4 on the generated memes, screenshots, signs and receipts
    python -m bench.run --only ocr_search  # phrase queries' recall@1 with 50 distractors; the text pass's rate
    python -m bench.run --only colors  # the batched palette against K-Means: speed and agreement
    python -m bench.run --only text_search  # the text in 100k pictures searched, SQLite and PostgreSQL
    python -m bench.run --only reposts  # a repost check against 100k sightings of one chat
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # benchmarks build their models; never the network

from bench import (
    calibration,
    captions,
    colors,
    e2e,
    encode,
    ingest,
    ocr,
    ocr_search,
    pipeline,
    postgres,
    reposts,
    search,
    soak,
    startup,
    text_search,
)
from bench.common import model_dir
from bench.report import write_report

RESULTS = Path(__file__).parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes (CI)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="results folder (default bench/results)")
    parser.add_argument("--only", choices=["encode", "search", "e2e", "ingest", "captions", "soak", "startup",
                                           "postgres", "calibration", "pipeline", "colors", "ocr", "ocr_search",
                                           "text_search", "reposts"],
                        action="append")
    parser.add_argument("--model", type=Path, help="a local CLIP directory to measure instead of random ViT-B/32 "
                                                  "(e.g. real weights, to check int8's agreement on them)")
    args = parser.parse_args(argv)
    import torch

    sections = args.only or ["search", "encode", "e2e", "pipeline", "ingest", "colors", "captions", "soak",
                             "startup", "postgres", "calibration", "ocr", "ocr_search", "text_search",
                             "reposts"]
    # Built only when a section measures it: search has no model, and the soak always uses the tiny one.
    measures_model = bool({"encode", "e2e", "ingest", "captions", "startup"} & set(sections))
    model = args.model or (model_dir(args.smoke) if measures_model else Path())
    model_text = (str(args.model) if args.model else "tiny random CLIP" if args.smoke
                  else "ViT-B/32 architecture, random weights")
    if not measures_model:
        model_text = "tiny random CLIP (the soak's)" if "soak" in sections else "no model (search only)"
    results: dict[str, Any] = {
        "meta": {"mode": "smoke" if args.smoke else "full", "date": time.strftime("%Y-%m-%d %H:%M"),
                 "python": sys.version.split()[0], "torch": torch.__version__, "cpus": os.cpu_count(),
                 "torch_threads": torch.get_num_threads(), "machine": platform.machine(),
                 "model": model_text},
    }
    runners = {"search": lambda: search.run(smoke=args.smoke), "encode": lambda: encode.run(model, smoke=args.smoke),
               "e2e": lambda: e2e.run(model, smoke=args.smoke), "ingest": lambda: ingest.run(model, smoke=args.smoke),
               "captions": lambda: captions.run(model, smoke=args.smoke),
               "soak": lambda: soak.run(smoke=args.smoke),  # the bot, not the model: always the tiny CLIP
               "startup": lambda: startup.run(model, smoke=args.smoke),
               "postgres": lambda: postgres.run(smoke=args.smoke),  # vectors only: no model
               "calibration": lambda: calibration.run(smoke=args.smoke),  # vectors and a stand-in text encoder
               "pipeline": lambda: pipeline.run(smoke=args.smoke),  # a zero-cost encoder: no model
               "colors": lambda: colors.run(smoke=args.smoke),  # K-Means against the batched palette
               "ocr": lambda: ocr.run(smoke=args.smoke),  # PP-OCRv4 from the ocr extra's wheel
               "ocr_search": lambda: ocr_search.run(smoke=args.smoke),  # phrase recall@1 among distractors
               "text_search": lambda: text_search.run(smoke=args.smoke),  # folded substrings at 100k, both backends
               "reposts": lambda: reposts.run(smoke=args.smoke)}  # a repost check among 100k sightings
    for name in sections:
        started = time.perf_counter()
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        results[name] = runners[name]()
        print(f"bench: {name} done in {time.perf_counter() - started:.0f} s", file=sys.stderr, flush=True)
    stem = "smoke" if args.smoke else "latest"
    write_report(results, args.out, stem)
    print((args.out / f"{stem}.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
