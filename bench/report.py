"""latest.json, a Markdown table with the targets, and PNG plots (matplotlib's Figure API)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# (section, key, target as text, check) — the targets, each a ratio within one run.
TARGETS: list[tuple[str, str, str, Any]] = [
    ("search", "seed_loop_speedup_10k", ">= 1000x", lambda v: v >= 1000),
    ("search", "faiss_time_ratio_100k", "<= 1.0 (ours / faiss)", lambda v: v <= 1.0),
    ("search", "p50_ms_1m", "<= 100 ms", lambda v: v <= 100),
    ("search", "gpu_p50_ms_1m", "<= 2 ms (GPU index)", lambda v: v <= 2),
    ("search", "gpu_index", "(reported)", None),
    ("encode", "speedup_vs_fp32_b8", ">= 2.5x", lambda v: v >= 2.5),
    ("encode", "cosine_agreement_min", ">= 0.99", lambda v: v >= 0.99),
    ("encode", "default_precision", "(reported)", None),
    ("encode", "e2e_vs_model_only", ">= 0.9 (encode_images / encode_pixels, b8)", lambda v: v >= 0.9),
    ("encode", "e2e_vs_model_only_reference_processor", "(reported: transformers' processor)", None),
    ("encode", "preprocess_pixel_cosine_min", ">= 0.999", lambda v: v >= 0.999),
    ("e2e", "batching_speedup_32", ">= 2x", lambda v: v >= 2),
    ("e2e", "loop_lag_ms_max", "< 50 ms", lambda v: v < 50),
    ("pipeline", "images_per_s", ">= 500 (zero-cost encoder, 2 cores)", lambda v: v >= 500),
    ("pipeline", "cpu_ms_per_image", "(reported: every thread's CPU time)", None),
    ("ingest", "fraction_of_encoder", ">= 0.8", lambda v: v >= 0.8),
    ("ingest", "fraction_of_model_only", ">= 0.85 (of encode_pixels, passes off)", lambda v: v >= 0.85),
    ("ingest", "images_per_s", ">= 55 (1.8x 30.6, 2-core CPU)", lambda v: v >= 55),
    ("ingest", "color_pass_images_per_s", "(reported)", None),
    ("colors", "agreement", ">= 0.95 (top family, K-Means, package photos)", lambda v: v >= 0.95),
    ("colors", "cpu_speedup", "(reported: K-Means / batched)", None),
    ("captions", "ingest_fraction_of_model_only", ">= 0.75 (captions on)", lambda v: v >= 0.75),
    ("captions", "caption_pass_images_per_s", "(reported)", None),
    ("captions", "int8_speedup_b8", "(reported)", None),
    ("soak", "unanswered", "== 0", lambda v: v == 0),
    ("soak", "rss_growth_mb", "< 50 MB", lambda v: v < 50),
    ("soak", "rss_growth_second_half_mb", "< 10 MB", lambda v: v < 10),
    ("soak", "fd_growth", "<= 5", lambda v: v <= 5),
    ("soak", "task_growth", "<= 5", lambda v: v <= 5),
    ("soak", "apologies", "(reported)", None),
    ("soak", "rps", "(reported)", None),
    ("soak", "rps_no_rate_limiter", "(reported)", None),
    ("soak", "rps_no_rate_limiter_without_ocr", ">= 50 req/s (2 cores)", lambda v: v >= 50),
    ("startup", "search_first_s", "(reported)", None),
    ("startup", "search_second_s", "< 3 s", lambda v: v < 3),
    ("startup", "precision_remembered", "yes", lambda v: v is True),
    ("postgres", "search_p50_ms", "<= 20 ms", lambda v: v <= 20),
    ("postgres", "recall_at_10", ">= 0.95 (CLIP-like data)", lambda v: v >= 0.95),
    ("postgres", "insert_vs_sqlite", ">= 0.8", lambda v: v >= 0.8),
    ("postgres", "hnsw_build_s", "(reported)", None),
    ("calibration", "sqlite_many_s", "< 1 s (256 queries, 50,000 images)", lambda v: v < 1),
    ("calibration", "sqlite_ratio", "(reported: 256 nearest / 1 nearest_many)", None),
    ("calibration", "sqlite_measure_s", "< 1 s (calibration's whole measurement)", lambda v: v < 1),
    ("calibration", "postgres_many_s", "(reported)", None),
    ("calibration", "postgres_ratio", "(reported: 256 nearest / 1 nearest_many)", None),
    ("calibration", "agreement", "== 1 (nearest's ids for every query)", lambda v: v == 1),
    ("ocr", "char_accuracy", "(reported: spacing ignored)", None),
    ("ocr", "cpu_s_per_picture", "(reported)", None),
    ("ocr_search", "recall_at_1", ">= 0.95 (phrases, 50 distractors)", lambda v: v >= 0.95),
    ("ocr_search", "text_pass_pictures_per_s", "(reported)", None),
]


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:,.3g}" if abs(value) < 1000 else f"{value:,.0f}"
    return str(value)


def table(results: dict[str, Any]) -> str:
    rows = ["| metric | value | target | met |", "| --- | --- | --- | --- |"]
    for section, key, target, check in TARGETS:
        if section not in results or key not in results[section]:
            continue
        value = results[section][key]
        met = "" if check is None else ("yes" if check(value) else "**no**")
        rows.append(f"| `{section}.{key}` | {_fmt(value)} | {target} | {met} |")
    return "\n".join(rows)


def details(results: dict[str, Any]) -> str:
    out = []
    if "encode" in results:
        out.append("\nEncoder images/s (batch size after the name):\n")
        out.append("| path | " + " | ".join(results["encode"]["images_per_s"]) + " |")
        out.append("| --- |" + " --- |" * len(results["encode"]["images_per_s"]))
        out.append("| images/s | " + " | ".join(_fmt(v) for v in results["encode"]["images_per_s"].values()) + " |")
        out.append("\nAgreement with plain fp32 (min cosine on real photos): "
                   + ", ".join(f"{k} {v:.4f}" for k, v in results["encode"]["agreement"].items())
                   + f"; text query {results['encode']['text_query_ms']:.0f} ms.")
        if "preprocess_ms_per_image" in results["encode"]:
            pre = results["encode"]["preprocess_ms_per_image"]
            out.append(f"Preprocessing: {pre['fast']:.2f} ms/image (transformers' processor: "
                       f"{pre['reference']:.2f}); vectors of the two at min cosine "
                       f"{results['encode']['preprocess_vector_cosine_min']:.5f}.")
    if "search" in results:
        s = results["search"]
        out.append("\n| N | clipbot fp16 ms | clipbot fp32 ms | seed loop ms | faiss ms | bytes/vector (fp16) |")
        out.append("| --- | --- | --- | --- | --- | --- |")
        for n in s["sizes"]:
            out.append(f"| {n:,} | {s['p50_ms'][f'fp16_{n}']:.2f} | {s['p50_ms'][f'fp32_{n}']:.2f} | "
                       f"{s['seed_loop_ms'][str(n)]:,.0f} | {_fmt(s['faiss_p50_ms'].get(str(n), float('nan')))} | "
                       f"{s['bytes_per_vector'][f'fp16_{n}']:.0f} |")
    if "e2e" in results:
        out.append("\n| concurrent photos | batched s | unbatched s | batched p50/p95 ms | unbatched p50/p95 ms "
                   "| worst loop lag ms |")
        out.append("| --- | --- | --- | --- | --- | --- |")
        cases = results["e2e"]["cases"]
        for m in sorted({int(k.split("_")[1]) for k in cases}):
            b, u = cases[f"batched_{m}"], cases[f"unbatched_{m}"]
            out.append(f"| {m} | {b['seconds']:.2f} | {u['seconds']:.2f} | {b['p50_ms']:.0f}/{b['p95_ms']:.0f} | "
                       f"{u['p50_ms']:.0f}/{u['p95_ms']:.0f} | {max(b['loop_lag_ms'], u['loop_lag_ms']):.1f} |")
    if "ingest" in results:
        i = results["ingest"]
        out.append(f"\nIngest: {i['photos']} photos in {i['seconds']:.1f} s = {i['images_per_s']:.1f} images/s; "
                   f"the encoder alone: {i['encoder_images_per_s']:.1f} images/s. Indexing the same folder "
                   f"again (unchanged): {i['reindex_unchanged_s']:.2f} s.")
    if "captions" in results:
        c = results["captions"]
        out.append(f"\nBLIP captions/s ({c['model']}, 30 tokens each, CPU): "
                   + ", ".join(f"{p} batch {b}: {c[f'images_per_s_{p}_b{b}']:.3g}" for p in ("fp32", "int8")
                               for b in (1, 8))
                   + f". Ingest with captions on: {c['ingest_images_per_s']:.1f} images/s searchable (the CLIP "
                   f"model alone {c['model_only_images_per_s']:.1f}), then the caption pass at "
                   f"{c['caption_pass_images_per_s']:.2f} images/s.")
    if "soak" in results:
        k = results["soak"]
        out.append(f"\nSoak: {k['requests']} mixed Telegram requests ({k['measured_requests']} measured after "
                   f"warm-up) over {k['chats']['private']} private chats and {k['chats']['groups']} groups, "
                   f"{k['in_flight']} in flight, {k['model']}. With the flood limiter: {k['rps']:.1f} requests/s, "
                   f"p50/p95 {k['p50_ms']:.0f}/{k['p95_ms']:.0f} ms; without it "
                   f"({k['no_rate_limiter']['requests']} requests): {k['no_rate_limiter']['rps']:.1f} requests/s, "
                   f"p50/p95 {k['no_rate_limiter']['p50_ms']:.0f}/{k['no_rate_limiter']['p95_ms']:.0f} ms; "
                   f"without it and without OCR: {k['no_rate_limiter_without_ocr']['rps']:.1f} requests/s.")
        cpu = {run: ", ".join(f"{t} {v}" for t, v in k[run]["cpu_ms_per_request"].items())
               for run in ("no_rate_limiter", "no_rate_limiter_without_ocr")}
        out.append(f"CPU ms per request by thread, without the limiter: with OCR {cpu['no_rate_limiter']}; "
                   f"without {cpu['no_rate_limiter_without_ocr']}.")
        out.append(f"RSS {k['rss_mb_after_warmup']:.0f} -> {k['rss_mb_end']:.0f} MB (tenths: "
                   + ", ".join(f"{v:.0f}" for v in k["rss_trace_mb"]) + "); "
                   f"fds {k['fds_after_warmup']} -> {k['fds_end']} and tasks {k['tasks_after_warmup']} -> "
                   f"{k['tasks_end']}, of which pooled bot-fake connections {k['connections_after_warmup']} -> "
                   f"{k['connections_end']}; tasks left after stop: {k['tasks_left_after_stop']}. "
                   f"Unexpected answers: {k['unexpected_answers']}; calls the fake API refused: "
                   f"{k['refused_calls']}; logged: {k['log_records'] or 'nothing'}.")
        out.append("Requests by kind: " + ", ".join(f"{kind} {n}" for kind, n in k["kinds"].items()) + ".")
        for label, examples in (("unexpected", k["unexpected_examples"]), ("unanswered", k["timed_out_examples"]),
                                ("refused", [f"{n}x {what}" for what, n in k["refused_examples"].items()])):
            out.extend(f"- {label}: `{e}`" for e in examples)
    if "startup" in results:
        t = results["startup"]
        out.append(f"\nStart-up of `clipbot search IMG -k 1` (a fresh process, {t['photos']} photos): first result "
                   f"after {t['search_first_s']:.2f} s on the first run, {t['search_second_s']:.2f} s on the second "
                   f"(exit {t['search_first_exit_s']:.2f} / {t['search_second_exit_s']:.2f} s; precision "
                   f"{'taken from the cache' if t['precision_remembered'] else 'measured again'}). Of that, in "
                   f"fresh processes: interpreter {t['python_s']:.2f} s, `import bot.cli` {t['cli_import_s']:.2f} s, "
                   f"`import torch` {t['torch_import_s']:.2f} s, transformers' CLIP classes (with torch) "
                   f"{t['clip_classes_import_s']:.2f} s.")
    if "calibration" in results:
        c = results["calibration"]
        out.append(f"\nCalibration's searches, {c['queries']} stored vectors as queries (k = {c['k']}) over {c['n']:,} "
                   f"images of {c['dim']} dimensions: "
                   + "; ".join(f"{name}: {c[name]['singles_s']:.2f} s as single nearest() calls, "
                               f"{c[name]['many_s']:.3f} s as one nearest_many() ({c[name]['ratio']:.1f}x), the whole "
                               f"measurement {c[name]['measure_s']:.2f} s" for name in ("sqlite", "postgres")) + ".")
    return "\n".join(out)


def _save(fig: Figure, path: Path) -> None:
    FigureCanvasAgg(fig)
    fig.savefig(path)


def plots(results: dict[str, Any], out: Path, stem: str) -> None:
    if "search" in results:
        s = results["search"]
        fig = Figure(figsize=(6, 4), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        sizes = s["sizes"]
        ax.loglog(sizes, [s["p50_ms"][f"fp16_{n}"] for n in sizes], "o-", label="clipbot (fp16)")
        ax.loglog(sizes, [s["p50_ms"][f"fp32_{n}"] for n in sizes], "o-", label="clipbot (fp32)")
        ax.loglog(sizes, [s["seed_loop_ms"][str(n)] for n in sizes], "o-", label="seed per-row loop")
        if s["faiss_p50_ms"]:
            ax.loglog([int(n) for n in s["faiss_p50_ms"]], list(s["faiss_p50_ms"].values()), "o-", label="faiss flat")
        ax.set_xlabel("vectors (512-d)")
        ax.set_ylabel("top-10 latency, ms (p50)")
        ax.legend()
        _save(fig, out / f"{stem}-search.png")
    if "encode" in results:
        e = results["encode"]["images_per_s"]
        fig = Figure(figsize=(7, 4), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        ax.barh(list(e), list(e.values()))
        ax.invert_yaxis()
        ax.set_xlabel("images/s")
        _save(fig, out / f"{stem}-encode.png")
    if "e2e" in results:
        cases = results["e2e"]["cases"]
        ms = sorted({int(k.split("_")[1]) for k in cases})
        fig = Figure(figsize=(6, 4), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        for kind in ("batched", "unbatched"):
            ax.plot(ms, [cases[f"{kind}_{m}"]["photos_per_s"] for m in ms], "o-", label=kind)
        ax.set_xlabel("concurrent photos")
        ax.set_ylabel("photos/s")
        ax.legend()
        _save(fig, out / f"{stem}-e2e.png")
    if "soak" in results:
        k = results["soak"]
        fig = Figure(figsize=(6, 4), dpi=100, layout="constrained")
        ax = fig.add_subplot()
        growth = [v - k["rss_trace_mb"][0] for v in k["rss_trace_mb"]]
        ax.plot([k["measured_requests"] * i / (len(growth) - 1) for i in range(len(growth))], growth, "o-")
        ax.axhline(50, linestyle="--", color="gray", label="target")
        ax.set_ylim(min(0.0, *growth) - 5, max(60.0, *growth) + 5)
        ax.set_xlabel("requests after warm-up")
        ax.set_ylabel("RSS growth since warm-up, MB")
        ax.legend()
        _save(fig, out / f"{stem}-soak.png")


def write_report(results: dict[str, Any], out: Path, stem: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{stem}.json").write_text(json.dumps(results, indent=2))
    meta = results["meta"]
    header = (f"Benchmark ({meta['mode']}, {meta['date']}): {meta['model']}; {meta['cpus']} CPUs, "
              f"torch {meta['torch']} with {meta['torch_threads']} threads.\n\n")
    (out / f"{stem}.md").write_text(header + table(results) + "\n" + details(results) + "\n")
    plots(results, out, stem)
