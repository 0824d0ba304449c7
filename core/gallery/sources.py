"""What ``clipbot index`` reads: files and folders walked with exclusions, and a labels CSV."""

from __future__ import annotations

import csv
import fnmatch
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from core.errors import FileMissingError, InputError
from core.media.images import is_image_filename

# Hidden entries (".git", ".thumbnails", macOS "._x.jpg"), NAS thumbnail and recycle folders and
# package trees hold no photos of the operator's own. Patterns match one file or folder name.
DEFAULT_EXCLUDES: tuple[str, ...] = (".*", "@eaDir", "#recycle", "#snapshot", "node_modules", "__pycache__")


@dataclass(frozen=True)
class IngestItem:
    """One file to index, with the label and description it should get (None keeps the old one)."""

    path: Path
    label: str | None = None
    description: str | None = None


@dataclass
class Collected:
    """The files a run will index, and what the walk knows for ``--prune``."""

    items: list[IngestItem] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    folders: list[Path] = field(default_factory=list)  # resolved folders walked
    missing: list[Path] = field(default_factory=list)  # resolved roots that are gone (only with allow_missing)
    seen: set[str] = field(default_factory=set)  # every image file found under ``folders``, resolved


@dataclass(frozen=True)
class CsvLabels:
    rows: dict[Path, tuple[str, str]]
    problems: list[tuple[str, str]]  # (where, reason): rows that cannot be used


def read_labels_csv(path: Path) -> CsvLabels:
    """Read a ``path,label,description`` CSV; relative paths are relative to the CSV's folder.

    A header without ``path`` and ``label`` refuses the whole file; a bad row is reported and the
    rest are used.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or "path" not in reader.fieldnames or "label" not in reader.fieldnames:
                raise InputError(f"{path} needs a header row with the columns path,label,description.")
            rows = list(reader)
    except FileNotFoundError:
        raise FileMissingError(f"No such file: {path}") from None
    except (OSError, UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"Cannot read {path}: {exc}") from None
    out: dict[Path, tuple[str, str]] = {}
    problems: list[tuple[str, str]] = []
    for number, row in enumerate(rows, start=2):  # row 1 is the header
        where = f"{path}, row {number}"
        raw = (row.get("path") or "").strip()
        if not raw:
            problems.append((where, "no path"))
            continue
        target = Path(raw).expanduser()
        if not target.is_absolute():
            target = path.parent / target
        if not target.is_file():
            problems.append((where, f"no such file: {raw}"))
            continue
        out[target.resolve()] = ((row.get("label") or "").strip(), (row.get("description") or "").strip())
    return CsvLabels(out, problems)


def excluded(name: str, patterns: Iterable[str]) -> bool:
    """Whether a folder or file name matches one of the exclusion patterns."""
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def walk_images(root: Path, excludes: Sequence[str]) -> tuple[list[Path], list[tuple[str, str]]]:
    """Image files under ``root`` in a stable order, not descending into excluded folders;
    returns ``(images, other files)``."""
    images: list[Path] = []
    others: list[tuple[str, str]] = []
    for folder, dirs, files in os.walk(root):
        dirs[:] = sorted(d for d in dirs if not excluded(d, excludes))
        for name in sorted(files):
            if excluded(name, excludes):
                continue
            p = Path(folder) / name
            if is_image_filename(p):
                images.append(p)
            else:
                others.append((str(p), "not an image file"))
    return images, others


def collect_items(
    paths: Sequence[Path],
    *,
    label: str | None = None,
    description: str | None = None,
    labels_from_folders: bool = False,
    labels_csv: Path | None = None,
    excludes: Sequence[str] = DEFAULT_EXCLUDES,
    allow_missing: bool = False,
) -> Collected:
    """Expand files and folders into items.

    Label precedence: the CSV row, then the parent folder's name, then ``label``. A missing root
    is an error (nothing is indexed), unless ``allow_missing`` (``--prune``: a deleted folder's
    images are to be removed).
    """
    csv_labels = read_labels_csv(labels_csv) if labels_csv else CsvLabels({}, [])
    out = Collected(skipped=list(csv_labels.problems))
    files: list[Path] = []
    for root in paths or list(csv_labels.rows):
        if root.is_dir():
            found, others = walk_images(root, excludes)
            files += found
            out.skipped += others
            out.folders.append(root.resolve())
            out.seen.update(str(p.resolve()) for p in found)
        elif root.is_file():
            files.append(root)
        elif allow_missing:
            out.missing.append(root.absolute().resolve())
        else:  # a mistyped argument is an error, not a skip: nothing is indexed
            raise FileMissingError(f"No such file or folder: {root}")
    seen_keys: set[Path] = set()
    for f in files:
        key = f.resolve()
        if key in seen_keys:
            continue
        seen_keys.add(key)
        item_label, item_description = label, description
        if labels_from_folders:
            item_label = key.parent.name
        if key in csv_labels.rows:
            item_label, item_description = csv_labels.rows[key][0], csv_labels.rows[key][1] or description
        out.items.append(IngestItem(f, item_label, item_description))
    return out


def under(path: str, roots: Iterable[Path]) -> bool:
    """Whether ``path`` (resolved) lies inside one of ``roots`` (resolved folders)."""
    return any(path == str(r) or path.startswith(str(r).rstrip(os.sep) + os.sep) for r in roots)
