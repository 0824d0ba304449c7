"""The ``clipbot`` command line: operators index, search and manage the image database here."""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import re
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from bot.commands import HANDLERS, UsageError
from bot.composition import apply_process_settings
from bot.logs import configure_logging
from bot.passes import PASS_NAMES
from bot.settings import load_settings
from core.errors import ClipbotError, StorageUnavailableError
from core.galleries import GLOBAL_COLLECTION
from core.gallery import DEFAULT_EXCLUDES


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipbot", description="Image search with CLIP: index photos, then find them by photo or by text."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text)

    for name, what in (
        ("index", "Add image files and folders to the database. Files unchanged since the last run are "
                  "skipped undecoded; a file edited in place replaces its entry (same id and label)."),
        ("sync", "Make the database match folders: index them, and remove the entries whose file is gone "
                 "(index --prune)."),
    ):
        p = add(name, what)
        p.add_argument("paths", nargs="*", type=Path, metavar="PATH",
                       help="image files or folders (walked recursively)")
        p.add_argument("--collection", default=GLOBAL_COLLECTION, help="gallery to add to (default: global)")
        p.add_argument("--label", help="label for every image")
        p.add_argument("--description", help="description for every image")
        p.add_argument("--labels-from-folders", action="store_true", help="label each image with its folder's name")
        p.add_argument("--labels-csv", type=Path, metavar="FILE", help="CSV with columns path,label,description")
        if name == "index":
            p.add_argument("--prune", action="store_true",
                           help="also remove entries indexed from under PATH whose file is gone")
            p.add_argument("--shard", type=shard_spec, metavar="K/N",
                           help="take only share K of N of the files (several machines, one job: run each "
                                "share with the same PATHs); with --prune, prune only this share's files")
        p.add_argument("--exclude", action="append", default=[], metavar="PATTERN",
                       help="skip files and folders whose name matches (repeatable; added to the defaults: "
                            f"{' '.join(DEFAULT_EXCLUDES)})")
        p.add_argument("--no-default-excludes", action="store_true", help="walk into the default exclusions too")
        _pass_switches(p, "after indexing (`clipbot enrich` runs it later)")

    p = add("enrich", "Run the enrichment passes (colours, captions, text in pictures) over the images "
                      "still waiting for them.")
    p.add_argument("--collection", help="only this collection")
    _pass_switches(p, "")

    for name, what in (("search", "Find the images most similar to a photo."),
                       ("scores", "Score every image of a collection against a photo, best first.")):
        p = add(name, what)
        p.add_argument("image", type=Path, metavar="IMAGE")
        if name == "search":
            _results_options(p)
        _collections_and_json(p, many=name == "search")
        _plot(p, "a collage of the results" if name == "search" else "a bar chart of the scores")

    p = add("find", "Find images by text: label and description words first, then CLIP meaning. "
                    "Add color:red (or any colour) to keep only images with that dominant colour.")
    p.add_argument("text", nargs="+", metavar="TEXT")
    _results_options(p)
    _collections_and_json(p, many=True)
    _plot(p, "a collage of the results")

    p = add("describe", "Describe an image in words (BLIP caption).")
    p.add_argument("image", type=Path, metavar="IMAGE")

    p = add("caption", "Caption the stored images still waiting for one (no caption and no description) "
                       "with BLIP, in batches; resumes where an interrupted pass stopped.")
    p.add_argument("--collection", help="only this collection")

    p = add("colors", "An image's dominant colours (K-Means), largest share first.")
    p.add_argument("image", type=Path, metavar="IMAGE")
    p.add_argument("--json", action="store_true", help='print {"colors": [{"hex", "name", "percent"}, ...]}')
    _plot(p, "a palette strip")

    p = add("list", "List the images in the database.")
    p.add_argument("--collection", help="only this collection")
    p.add_argument("--json", action="store_true", help="print JSON")

    p = add("reindex", "Encode stored images again with the configured model (after changing "
                       "CLIPBOT_CLIP_MODEL): those without a vector for it, or all with --all.")
    p.add_argument("--collection", help="only this collection")
    p.add_argument("--all", action="store_true", help="re-encode every image, not only those missing a vector")

    p = add("remove", "Delete images by id (and their stored files, when no other entry uses them).")
    p.add_argument("ids", nargs="+", type=int, metavar="ID")

    add("stats", "Show collections, image counts and the configured model.")
    add("doctor", "Check the database and the stored pictures; remove leftovers of killed writes and unused files.")

    for name, what in (("import", "Import the seed notebook's pickled database (vectors kept exactly)."),
                       ("export", "Export a collection as the seed notebook's pickled database.")):
        p = add(name, what)
        p.add_argument("file", type=Path, metavar="FILE.pkl")
        p.add_argument("--collection", default=GLOBAL_COLLECTION, help="collection (default: global)")

    p = add("migrate", "Copy this gallery (vectors, labels, descriptions, captions, colours, authors, "
                       "collections, repost records, chat switches, inline file ids) into another database, "
                       "e.g. PostgreSQL. Open result threads stay behind. Run it again to resume.")
    p.add_argument("--to", required=True, metavar="URL", help="postgresql://user:password@host/db")

    add("download-models", "Download the configured models into the Hugging Face cache for offline use.")
    add("run", "Start the bot on every platform whose token is set (else the console chat).")
    add("chat", "Chat with the bot in this terminal: /find, /match PATH, /add PATH | label | description.")
    p = add("web", "Serve the web chat (Gradio) in the browser: match photos, search, browse and fill the gallery.")
    p.add_argument("--host", help="address to listen on (default: CLIPBOT_WEB_HOST, 127.0.0.1)")
    p.add_argument("--port", type=positive_int, help="port (default: CLIPBOT_WEB_PORT, else 7860)")
    return parser


def _pass_switches(p: argparse.ArgumentParser, when: str) -> None:
    for name in PASS_NAMES:
        p.add_argument(f"--no-{name}", action="store_true", help=f"skip the {name} pass {when}".rstrip())


def positive_int(text: str) -> int:
    """An argparse type: a whole number of at least 1 (``-k 0`` is a usage error, exit 2)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def shard_spec(text: str) -> tuple[int, int]:
    """An argparse type: ``K/N``, share K (counted from 1) of N, as ``(K, N)``."""
    # ASCII digits only: int() would also take Arabic-Indic digits or "+1", which no operator means.
    found = re.fullmatch(r"\s*([0-9]+)\s*/\s*([0-9]+)\s*", text)
    if found is None:
        raise argparse.ArgumentTypeError(f"not K/N (e.g. 1/2, the first of two shares): {text!r}")
    number, count = int(found[1]), int(found[2])
    if count < 1:
        raise argparse.ArgumentTypeError(f"N, the number of shares, must be at least 1: {text!r}")
    if not 1 <= number <= count:
        raise argparse.ArgumentTypeError(f"K must be between 1 and {count} (shares count from 1): {text!r}")
    return number, count


def _results_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-k", type=positive_int, default=5, help="how many results (default 5)")
    p.add_argument("-f", "--files", action="store_true",
                   help="print only the results' file paths, one a line (for pipes: | xargs ...)")


def _collections_and_json(p: argparse.ArgumentParser, *, many: bool) -> None:
    if many:
        p.add_argument("--collection", action="append", metavar="C",
                       help="collection to search; repeat for several (default: global)")
    else:
        p.add_argument("--collection", default=GLOBAL_COLLECTION, help="collection (default: global)")
    p.add_argument("--json", action="store_true", help='print {"results": [...]} as JSON')


def _plot(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument("--plot", type=Path, metavar="OUT.png", help=f"also write {what} as a PNG file")


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status (1: bad input, 2: usage)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors and 0 on --help
        return int(exc.code or 0)
    configure_logging(debug=args.debug, level="WARNING")
    try:
        settings = load_settings()
        configure_logging(debug=args.debug, level=settings.log_level)
        apply_process_settings(settings)
        status = asyncio.run(HANDLERS[args.command](args, settings))
        # The models' objects need no collecting at exit: freezing them saves about a second.
        gc.freeze()
        return status
    except UsageError as exc:
        print(f"clipbot {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except ClipbotError as exc:
        if args.debug:
            traceback.print_exc()
        detail = f" ({exc.detail})" if isinstance(exc, StorageUnavailableError) else ""
        print(f"clipbot: error: {exc}{detail}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # The reader went away (`clipbot list | head`): that is how pipes end, not an error to
        # report. Output still buffered would raise again at exit, so it goes to /dev/null.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141  # what a shell reports for a process ended by SIGPIPE
    except KeyboardInterrupt:
        print("clipbot: interrupted", file=sys.stderr)
        return 130
