"""One handler per ``clipbot`` subcommand, each named after its command."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from pathlib import Path
from typing import Any

from bot import output
from bot.composition import build_captioner, build_encoder, build_engine, build_gallery
from bot.downloads import download_model
from bot.passes import enrichments, run_passes
from bot.settings import Settings
from core.errors import CaptionsOffError, FileMissingError, InputError
from core.galleries import GLOBAL_COLLECTION
from core.gallery import (
    DEFAULT_EXCLUDES,
    Captions,
    Engine,
    Enrichment,
    collect_items,
    ingest,
    missing_roots_without_entries,
    prune,
    reindex,
    reindex_targets,
)
from core.models import ClipEncoder, ClipWithTextModel
from core.render import collage_png, colors_text, palette_png, scores_png
from core.search import SearchResult
from core.seed import export_seed, import_seed

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


class UsageError(InputError):
    """The command line was used wrongly in a way argparse cannot see; exits 2 like argparse's own."""


@command("index")
async def index(args: argparse.Namespace, settings: Settings) -> int:
    return await _index(args, settings, prune_gone=args.prune)


@command("sync")
async def sync(args: argparse.Namespace, settings: Settings) -> int:
    return await _index(args, settings, prune_gone=True)


async def _index(args: argparse.Namespace, settings: Settings, *, prune_gone: bool) -> int:
    from tqdm import tqdm

    if not args.paths and not args.labels_csv:
        raise UsageError("give at least one PATH to index, or --labels-csv FILE")
    excludes = [*([] if args.no_default_excludes else DEFAULT_EXCLUDES), *args.exclude]
    found = collect_items(
        args.paths, label=args.label, description=args.description, labels_from_folders=args.labels_from_folders,
        labels_csv=args.labels_csv, excludes=excludes, allow_missing=prune_gone, shard=getattr(args, "shard", None),
    )
    for path, reason in found.skipped:
        print(f"clipbot: warning: skipping {path}: {reason}", file=sys.stderr)

    # The arguments are checked before the engine starts: a mistake creates no database.
    async with build_engine(settings) as engine:
        mistyped = await missing_roots_without_entries(engine, found, args.collection)
        if mistyped:
            raise FileMissingError(f"No such file or folder: {mistyped[0]}")
        await engine.sweep()  # what a killed index left behind
        with tqdm(total=len(found.items), unit="img", desc="Indexing", file=sys.stderr, disable=None) as bar:
            summary = await ingest(
                engine, found.items, collection=args.collection,
                batch_size=settings.batch_size, added_by="cli", progress=bar.update,
            )
        if prune_gone:
            if found.shard is not None:  # a gone file of another share is that share's run to prune
                found.keep_other_shares(r.source_path for r in await engine.indexed_files(args.collection)
                                        if r.source_path)
            summary.pruned = await prune(engine, found, args.collection)
        if found.shard is not None:
            print(f"Shard {found.shard}: {len(found.items)} of {found.found} files.")
        output.print_summary(summary, args.collection, already_warned=len(found.skipped))
        # The images are searchable now; the enrichment passes come after, and a failure there
        # fails nothing above.
        await run_passes(engine, _chosen_passes(args), args.collection, say_unavailable=False)
    # Scripts can tell "nothing could be indexed" from success.
    return 1 if found.items and summary.added + summary.changed + summary.unchanged == 0 else 0


async def _check_collections(engine: Engine, names: Iterable[str | None]) -> None:
    """An unknown collection is named, with those that exist, instead of "no images"."""
    counts = await engine.collection_counts()
    unknown = [n for n in names if n is not None and n not in counts]
    if unknown and counts:
        have = ", ".join(f"{name} ({n})" for name, n in counts.items())
        raise InputError(f"There is no collection {unknown[0]!r}. The gallery has: {have}.")


async def _searchable(engine: Engine, names: Iterable[str | None]) -> None:
    """Before a search: the collections exist, and the gallery has vectors of the configured model."""
    await _check_collections(engine, names)
    missing = await engine.check_model()
    if missing:
        print(f"clipbot: warning: {missing} image(s) have no vector for {engine.model_id!r} and cannot be "
              "found: run `clipbot reindex`.", file=sys.stderr)


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
    if getattr(args, "files", False):
        output.print_files(results)
    else:
        output.print_results(results, as_json=args.json)
    if results:
        await _write_plot(args.plot, lambda: render(results))
    elif args.plot:
        print("clipbot: warning: nothing to plot", file=sys.stderr)
    return 0


def _chosen_passes(args: argparse.Namespace) -> list[Enrichment]:
    """The passes not switched off with ``--no-<name>``."""
    return [p for p in enrichments() if not getattr(args, f"no_{p.name}", False)]


@engine_command("caption")
async def caption(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    if engine.captioner is None:
        raise CaptionsOffError("Captions are turned off here (CLIPBOT_CAPTION_MODEL=none).")
    await _check_collections(engine, [args.collection])
    return 1 if await run_passes(engine, [Captions()], args.collection, say_unavailable=True) else 0


@engine_command("enrich")
async def enrich(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    await _check_collections(engine, [args.collection])
    return 1 if await run_passes(engine, _chosen_passes(args), args.collection, say_unavailable=True) else 0


@engine_command("reindex")
async def reindex_images(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    from tqdm import tqdm

    await _check_collections(engine, [args.collection])
    targets = await reindex_targets(engine, collection=args.collection, everything=args.all)
    with tqdm(total=len(targets), unit="img", desc="Re-encoding", file=sys.stderr, disable=None) as bar:
        summary = await reindex(engine, targets, batch_size=settings.batch_size, progress=bar.update)
    print(f"Re-encoded {summary.changed} image(s) with {settings.clip_model}; {len(summary.skipped)} skipped.")
    for what, reason in summary.skipped:
        print(f"  skipped {what}: {reason}")
    return 0


@engine_command("search")
async def search(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    await _searchable(engine, _collections(args))
    results = await engine.search_image(args.image, collections=_collections(args), k=args.k)
    return await _print_results(args, results, collage_png)


@engine_command("find")
async def find(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    await _searchable(engine, _collections(args))
    results = await engine.find_text(" ".join(args.text), collections=_collections(args), k=args.k)
    return await _print_results(args, results, collage_png)


@engine_command("scores")
async def scores(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    await _searchable(engine, [args.collection])
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
    await _check_collections(engine, [args.collection])
    records = await engine.list_images(args.collection)
    output.print_records(records, [engine.path_of(r) for r in records], as_json=args.json)
    return 0


@engine_command("remove")
async def remove(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    ids = list(dict.fromkeys(args.ids))
    for image_id in ids:  # every id is checked first: a typo in one removes none of them
        await engine.get_image(image_id)
    for image_id in ids:
        record = await engine.remove(image_id)
        print(f"Removed #{record.id} {record.label!r} from {record.collection!r}.")
    return 0


@engine_command("stats")
async def stats(args: argparse.Namespace, settings: Settings, engine: Engine) -> int:
    counts = await engine.collection_counts()
    vectors = await engine.vector_counts()
    storage = await engine.storage()
    total = sum(counts.values())
    print(f"Data dir:    {settings.data_dir.resolve()}")
    print(f"Database:    {storage.database} (schema {storage.schema_version})")
    print(f"Pictures:    {storage.media_dir}")
    print(f"Model:       {settings.clip_model}")
    encoder = build_encoder(settings)  # not loaded: "auto"'s figures come from its cache
    clip = encoder.clip if isinstance(encoder, ClipWithTextModel) else encoder
    if isinstance(clip, ClipEncoder):
        print("\n".join(clip.precision_report()))
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
    storage = await engine.storage()
    print(f"Database:    {storage.database}: {'ok' if health.integrity == ['ok'] else 'DAMAGED'}")
    for problem in health.integrity if health.integrity != ["ok"] else []:
        print(f"  {problem}")
    print(f"Pictures:    {health.sweep.files_kept} in use, {len(health.missing_files)} missing")
    for missing in health.missing_files[:20]:
        print(f"  missing: {engine.picture_file(missing)}")
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
    await _check_collections(engine, [args.collection])
    n = await export_seed(engine, args.file, collection=args.collection)
    print(f"Exported {n} image(s) of {args.collection!r} to {args.file}.")
    return 0


@command("migrate")
async def migrate(args: argparse.Namespace, settings: Settings) -> int:
    from tqdm import tqdm

    from core.chat import STATE_KINDS
    from core.storage import copy_gallery

    source, target = build_gallery(settings), build_gallery(settings, url=args.to)
    if source.location == target.location:
        raise UsageError(f"--to names the gallery being copied ({source.location})")
    async with contextlib.AsyncExitStack() as stack:
        for gallery in (source, target):
            await gallery.open()
            stack.push_async_callback(gallery.close)
        total = sum((await source.collection_counts()).values())
        with tqdm(total=total, unit="img", desc="Copying", file=sys.stderr, disable=None) as bar:
            # The chat's switches, members and inline file ids go too: nobody would think to set them again.
            report = await copy_gallery(source, target, state=STATE_KINDS,
                                        progress=lambda done: bar.update(done - bar.n))
    output.print_copy_report(report, source.location, target.location, pictures_dir=settings.pictures_dir,
                             thread_hours=settings.thread_hours)
    return 0 if report.matches else 1


@command("download-models")
async def download_models(args: argparse.Namespace, settings: Settings) -> int:
    where = download_model(settings.clip_model, setting="CLIPBOT_CLIP_MODEL")
    text_where = download_model(settings.text_model, setting="CLIPBOT_TEXT_MODEL") if settings.text_model else None
    encoder = build_encoder(settings)
    # Proves the files load (and that the text model's vectors fit CLIP's), so an offline machine
    # will not find out later.
    encoder.load()
    print(f"CLIP model {settings.clip_model} ready at {where} ({encoder.dim}-dimensional vectors).")
    if text_where is not None:
        print(f"Text model {settings.text_model} ready at {text_where} (searches in any language it knows).")
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


@command("web")
async def web(args: argparse.Namespace, settings: Settings) -> int:
    """The web chat alone: ``clipbot run`` without the chat platforms, with CLIPBOT_WEB_PORT (7860) set."""
    from adapters.web import DEFAULT_PORT
    from bot.runner import run_bot

    only_web = settings.model_copy(update={
        "telegram_bot_token": None, "discord_bot_token": None,
        "web_port": args.port or settings.web_port or DEFAULT_PORT, "web_host": args.host or settings.web_host,
    })
    return await run_bot(only_web)


@command("chat")
async def chat(args: argparse.Namespace, settings: Settings) -> int:
    from bot.runner import run_console

    return await run_console(settings)
