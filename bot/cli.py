"""The ``clipbot`` command line: operators index, search and manage the image database here."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path

from bot.commands import HANDLERS
from bot.composition import apply_process_settings
from bot.settings import load_settings
from core.errors import ClipbotError, InputError, StorageUnavailableError
from core.galleries import GLOBAL_COLLECTION


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clipbot", description="Image search with CLIP: index photos, then find them by photo or by text."
    )
    parser.add_argument("--debug", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=help_text, description=help_text)

    p = add("index", "Add image files and folders to the database (same picture again: label updated).")
    p.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="image files or folders (walked recursively)")
    p.add_argument("--collection", default=GLOBAL_COLLECTION, help="gallery to add to (default: global)")
    p.add_argument("--label", help="label for every image")
    p.add_argument("--description", help="description for every image")
    p.add_argument("--labels-from-folders", action="store_true", help="label each image with its folder's name")
    p.add_argument("--labels-csv", type=Path, metavar="FILE", help="CSV with columns path,label,description")

    for name, what in (("search", "Find the images most similar to a photo."),
                       ("scores", "Score every image of a collection against a photo, best first.")):
        p = add(name, what)
        p.add_argument("image", type=Path, metavar="IMAGE")
        if name == "search":
            p.add_argument("-k", type=int, default=5, help="how many results (default 5)")
        _collections_and_json(p, many=name == "search")
        _plot(p, "a collage of the results" if name == "search" else "a bar chart of the scores")

    p = add("find", "Find images by text: label and description words first, then CLIP meaning. "
                    "Add color:red (or any colour) to keep only images with that dominant colour.")
    p.add_argument("text", nargs="+", metavar="TEXT")
    p.add_argument("-k", type=int, default=5, help="how many results (default 5)")
    _collections_and_json(p, many=True)
    _plot(p, "a collage of the results")

    p = add("describe", "Describe an image in words (BLIP caption).")
    p.add_argument("image", type=Path, metavar="IMAGE")

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

    p = add("remove", "Delete an image (and its file, when no other entry uses it).")
    p.add_argument("id", type=int, metavar="ID")

    add("stats", "Show collections, image counts and the configured model.")
    add("doctor", "Check the database and the stored pictures; remove leftovers of killed writes and unused files.")

    for name, what in (("import", "Import the seed notebook's pickled database (vectors kept exactly)."),
                       ("export", "Export a collection as the seed notebook's pickled database.")):
        p = add(name, what)
        p.add_argument("file", type=Path, metavar="FILE.pkl")
        p.add_argument("--collection", default=GLOBAL_COLLECTION, help="collection (default: global)")

    add("download-models", "Download the configured models into the Hugging Face cache for offline use.")
    add("run", "Start the bot on every platform whose token is set (else the console chat).")
    add("chat", "Chat with the bot in this terminal: /find, /match PATH, /add PATH | label | description.")
    return parser


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
    logging.basicConfig(level=logging.DEBUG if args.debug else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        settings = load_settings()
        logging.getLogger().setLevel(logging.DEBUG if args.debug else settings.log_level)
        if getattr(args, "k", 1) < 1:
            raise InputError("-k must be at least 1.")
        apply_process_settings(settings)
        return asyncio.run(HANDLERS[args.command](args, settings))
    except ClipbotError as exc:
        if args.debug:
            traceback.print_exc()
        detail = f" ({exc.detail})" if isinstance(exc, StorageUnavailableError) else ""
        print(f"clipbot: error: {exc}{detail}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("clipbot: interrupted", file=sys.stderr)
        return 130
