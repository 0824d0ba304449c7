"""One handler per ``clipbot`` subcommand, each named after its command."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine
from pathlib import Path
from typing import Any

from bot import output
from bot.composition import build_captioner, build_encoder, build_engine
from bot.downloads import download_model
from bot.settings import Settings
from core.engine import Engine
from core.errors import InputError
from core.galleries import GLOBAL_COLLECTION
from core.ingest import collect_items, ingest, reindex, reindex_targets
from core.search import SearchResult
from core.seed_io import export_seed, import_seed
from core.visuals import collage_png, colors_text, palette_png, scores_png

Handler = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]
EngineHandler = Callable[[argparse.Namespace, Settings, Engine], Awaitable[int]]
HANDLERS: dict[str, Handler] = {}


def command(name: str) -> Callable[[Handler], Handler]:
    """Register a subcommand's handler under its name."""
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


def engine_command(name: str) -> Callable[[EngineHandler], EngineHandler]:
    """Register a subcommand that works on the gallery: it gets a started engine, closed after it."""
    def register(fn: EngineHandler) -> EngineHandler:
        async def with_engine(args: argparse.Namespace, settings: Settings) -> int:
            async with build_engine(settings) as engine:
                return await fn(args, settings, engine)

        HANDLERS[name] = with_engine
        return fn

    return register


def _collections(args: argparse.Namespace) -> list[str]:
    return list(dict.fromkeys(args.collection or [GLOBAL_COLLECTION]))


@command("index")
async def index(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    if not args.paths and not args.labels_csv:
        raise InputError("Give at least one PATH to index, or --labels-csv FILE.")
    items, skipped = collect_items(
        args.paths, label=args.label, description=args.description,
        labels_from_folders=args.labels_from_folders, labels_csv=args.labels_csv,
    )
    for path, reason in skipped:
        print(f"clipbot: warning: skipping {path}: {reason}", file=sys.stderr)

    # The arguments are checked before the engine starts: a mistake creates no database.
    async with build_engine(settings) as engine:
        await engine.sweep()  # what a killed index left behind
        with tqdm(total=len(items), unit="img", desc="Indexing", file=sys.stderr, disable=None) as bar:
            summary = await ingest(
                engine, items, collection=args.collection, batch_size=settings.batch_size,
                added_by="cli", progress=bar.update,
            )
    output.print_summary(summary, args.collection, already_warned=len(skipped))
    # Scripts can tell "nothing could be indexed" from success.
    return 1 if items and summary.added + summary.updated == 0 else 0


def _write_file(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


async def _write_plot(path: Path | None, render: Callable[[], bytes]) -> None:
    """Render a card off the event loop and write it where --plot says."""
    if path is None:
        return
    png = await asyncio.to_thread(render)
    try:
        await asyncio.to_thread(_write_file, path, png)
    except OSError as exc:
        raise InputError(f"Cannot write {path}: {exc.strerror or exc}") from None
    print(f"Wrote {path}", file=sys.stderr)


async def _print_results(args: argparse.Namespace, results: list[SearchResult],
                         render: Callable[[list[SearchResult]], bytes]) -> int:
    output.print_results(results, as_json=args.json)
    if results:
        await _write_plot(args.plot, lambda: render(results))
    elif args.plot:
        print("clipbot: warning: nothing to plot", file=sys.stderr)
    return 0


@engine_command("reindex")
async def reindex_images(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    from tqdm import tqdm

    targets = await reindex_targets(engine, collection=args.collection, everything=args.all)
    with tqdm(total=len(targets), unit="img", desc="Re-encoding", file=sys.stderr, disable=None) as bar:
        summary = await reindex(engine, targets, batch_size=settings.batch_size, progress=bar.update)
    print(f"Re-encoded {summary.updated} image(s) with {settings.clip_model}; {len(summary.skipped)} skipped.")
    for what, reason in summary.skipped:
        print(f"  skipped {what}: {reason}")
    return 0


@engine_command("search")
async def search(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    results = await engine.search_image(args.image, collections=_collections(args), k=args.k)
    return await _print_results(args, results, collage_png)


@engine_command("find")
async def find(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    results = await engine.find_text(" ".join(args.text), collections=_collections(args), k=args.k)
    return await _print_results(args, results, collage_png)


@engine_command("scores")
async def scores(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    return await _print_results(args, await engine.scores(args.image, collections=[args.collection]), scores_png)


@engine_command("describe")
async def describe(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    print(await engine.describe(args.image) or "(no caption)")
    return 0


@engine_command("colors")
async def colors(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    found = await engine.colors(args.image)
    if args.json:
        print(json.dumps({"colors": [c.to_dict() for c in found]}, indent=2))
    else:
        print(colors_text(found))
    await _write_plot(args.plot, lambda: palette_png(found))
    return 0


@engine_command("list")
async def list_images(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    records = await engine.store.list_images(args.collection)
    output.print_records(records, [engine.path_of(r) for r in records], as_json=args.json)
    return 0


@engine_command("remove")
async def remove(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    record = await engine.remove(args.id)
    print(f"Removed #{record.id} {record.label!r} from {record.collection!r}.")
    return 0


@engine_command("stats")
async def stats(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    counts = await engine.store.collection_counts()
    vectors = await engine.store.embedding_counts()
    total = sum(counts.values())
    print(f"Database:    {engine.store.path} (schema {await engine.store.schema_version()})")
    print(f"Model:       {settings.clip_model}")
    print(f"Images:      {total} in {len(counts)} collection(s)")
    for name, n in counts.items():
        print(f"  {name:<24} {n}")
    current = vectors.get(engine.model_id, 0)
    print(f"Vectors:     {current} for the configured model")
    for model, n in vectors.items():
        if model != engine.model_id:
            print(f"  {n} made by another model ({model}); searches skip them")
    if current < total:
        print(f"  {total - current} image(s) have no vector for this model: run `clipbot reindex`.")
    return 0


@engine_command("doctor")
async def doctor(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    health = await engine.check_health()
    print(f"Database:    {engine.store.path}: {'ok' if health.integrity == ['ok'] else 'DAMAGED'}")
    for problem in health.integrity if health.integrity != ["ok"] else []:
        print(f"  {problem}")
    print(f"Pictures:    {health.sweep.files_kept} in use, {len(health.missing_files)} missing")
    for missing in health.missing_files[:20]:
        print(f"  missing: {engine.media.absolute(missing)}")
    print(f"Removed:     {health.sweep.temporary_removed} temporary file(s) of killed writes, "
          f"{health.sweep.orphans_removed} picture(s) no image uses")
    for problem in health.sweep.problems:
        print(f"  {problem}")
    return 0 if health.healthy else 1


@engine_command("import")
async def import_pickle(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    report = await import_seed(engine, args.file, collection=args.collection)
    print(f"Imported into {args.collection!r}: {report.added} added, {report.updated} updated.")
    if report.without_file:
        print(f"  {report.without_file} entr(ies) had no readable image file: vectors kept, no picture to show.")
    return 0


@engine_command("export")
async def export_pickle(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    n = await export_seed(engine, args.file, collection=args.collection)
    print(f"Exported {n} image(s) of {args.collection!r} to {args.file}.")
    return 0


@command("download-models")
async def download_models(args: argparse.Namespace, settings: Settings) -> int:
    where = download_model(settings.clip_model, setting="CLIPBOT_CLIP_MODEL")
    encoder = build_encoder(settings)
    encoder.load()  # proves the files load, so an offline machine will not find out later
    print(f"CLIP model {settings.clip_model} ready at {where} ({encoder.dim}-dimensional vectors).")
    captioner = build_captioner(settings)
    if captioner is None:
        print("Captions are off (CLIPBOT_CAPTION_MODEL=none): no caption model to fetch.")
        return 0
    where = download_model(settings.caption_model, setting="CLIPBOT_CAPTION_MODEL")
    captioner.load()
    print(f"Caption model {settings.caption_model} ready at {where}.")
    return 0


@command("run")
async def run(args: argparse.Namespace, settings: Settings) -> int:
    from bot.runner import run_bot

    return await run_bot(settings)


@command("chat")
async def chat(args: argparse.Namespace, settings: Settings) -> int:
    from bot.runner import run_console

    return await run_console(settings)
