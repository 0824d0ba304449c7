"""How the command line prints results: plain text for people, ``--json`` for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from core.gallery import IngestSummary
from core.records import ImageRecord
from core.search import SearchResult, shown_path
from core.storage import CopyReport


def print_results(results: Sequence[SearchResult], *, as_json: bool, out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if as_json:
        json.dump({"results": [r.to_dict() for r in results]}, out, ensure_ascii=False, indent=2)
        out.write("\n")
        return
    if not results:
        out.write("No images in this collection yet: add some with `clipbot index PATH`.\n")
        return
    for rank, r in enumerate(results, 1):
        text = " - ".join(part for part in (r.label, r.description) if part) or "(no label)"
        out.write(f"{rank:>3}. #{r.id:<6} {r.score:6.3f}  {text}\n")
        out.write(f"     {shown_path(r.source_path, r.path) or '(no file)'}\n")


def print_files(results: Sequence[SearchResult], out: TextIO | None = None) -> None:
    """``-f``: only the results' paths, one a line, for pipes; results without a file are left out."""
    out = out or sys.stdout
    for r in results:
        path = shown_path(r.source_path, r.path)
        if path:
            out.write(f"{path}\n")


def print_records(records: Sequence[ImageRecord], paths: Sequence[str | None], *, as_json: bool,
                  out: TextIO | None = None) -> None:
    out = out or sys.stdout
    if as_json:
        rows = [
            {"id": r.id, "collection": r.collection, "label": r.label, "description": r.description,
             "path": p, "source_path": r.source_path, "width": r.width, "height": r.height,
             "added_by": r.added_by, "created_at": r.created_at, "caption": r.caption,
             "colors": r.color_list}  # [] while the colour pass has not run
            for r, p in zip(records, paths, strict=True)
        ]
        json.dump({"images": rows}, out, ensure_ascii=False, indent=2)
        out.write("\n")
        return
    if not records:
        out.write("No images yet: add some with `clipbot index PATH`.\n")
        return
    for r, p in zip(records, paths, strict=True):
        text = " - ".join(part for part in (r.label, r.description) if part) or "(no label)"
        out.write(f"#{r.id:<6} {r.collection:<20} {r.width}x{r.height:<6} {text}\n"
                  f"       {shown_path(r.source_path, p) or '(no file)'}\n")


def print_summary(summary: IngestSummary, collection: str, *, already_warned: int = 0,
                  out: TextIO | None = None) -> None:
    """The closing line of ``clipbot index``, then each file that failed to decode and why."""
    out = out or sys.stdout
    out.write(
        f"Indexed into {collection!r}: {summary.added} new, {summary.changed} changed, {summary.unchanged} unchanged, "
        f"{summary.pruned} pruned, {len(summary.skipped) + already_warned} skipped.\n"
    )
    for path, reason in summary.skipped:
        out.write(f"  skipped {path}: {reason}\n")


def print_copy_report(report: CopyReport, source: str, target: str, *, pictures_dir: Path, thread_hours: float,
                      out: TextIO | None = None) -> None:
    """What ``clipbot migrate`` copied from ``source`` to ``target``, whether the two now match,
    and what it left behind."""
    out = out or sys.stdout
    out.write(f"Copied {report.copied} image(s) from {source} to {target}; "
              f"{report.skipped} were there already ({report.vectors_added} vector(s) added to them).\n")
    for name, (have, now) in report.collections.items():
        out.write(f"  {name:<24} {have} -> {now}{_mismatch(have, now)}\n")
    for model, (have, now) in report.vectors.items():
        out.write(f"  vectors of {model}: {have} -> {now}{_mismatch(have, now)}\n")
    seen, kept = sum(a for a, _ in report.sightings.values()), sum(b for _, b in report.sightings.values())
    out.write(f"  repost records: {seen} -> {kept}{_mismatch(seen, kept)} ({report.sightings_copied} copied)\n")
    read, held = report.texts
    out.write(f"  text read in pictures: {read} -> {held}{_mismatch(read, held)} ({report.texts_copied} copied)\n")
    if report.without_vector:
        out.write(f"  {len(report.without_vector)} image(s) without any vector were not copied: run `clipbot reindex` "
                  "first.\n")
    for name, done in report.state.items():
        notes = [f"{done.kept} already there (kept)"] * bool(done.kept)
        notes += [f"{done.orphaned} skipped (their image was not copied)"] * bool(done.orphaned)
        out.write(f"  {name}: {', '.join([f'{done.copied} copied', *notes])}\n")
    if report.left_behind:
        out.write(f"Left behind: {', '.join(f'{name} ({n})' for name, n in report.left_behind.items())}; each "
                  f"expires by itself (result threads within {thread_hours:g} hours).\n")
    # Said every time: an operator moving a live bot should know why yesterday's buttons stop working.
    out.write("Open result threads are not copied: buttons under results shown before the move answer "
              '"expired" once the bot uses the new database; a new search there gives working buttons.\n')
    out.write(f"Pictures stay in {pictures_dir}: point CLIPBOT_MEDIA_DIR there for every worker that uses "
              "the new database.\n")


def _mismatch(have: int, now: int) -> str:
    return "" if have == now else "  MISMATCH"
