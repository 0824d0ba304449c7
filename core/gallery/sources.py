"""What ``clipbot index`` reads: files and folders walked with exclusions, a labels CSV, and the
share of them one machine takes when several index one tree (``--shard K/N``)."""

from __future__ import annotations

import csv
import fnmatch
import hashlib
import os
import unicodedata
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


@dataclass(frozen=True)
class Shard:
    """Share ``number`` (1-based) of ``count``: the files whose :func:`share_of` is ``number``.

    Machines that index one tree with the same PATH arguments, each with its own number, take
    disjoint shares that together cover every file; nothing is coordinated between them.
    """

    number: int
    count: int

    def __post_init__(self) -> None:
        if self.count < 1:
            raise InputError(f"A shard count must be at least 1, not {self.count}.")
        if not 1 <= self.number <= self.count:
            raise InputError(f"Shard {self.number}/{self.count}: K counts from 1 to N ({self.count}).")

    def owns(self, key: str) -> bool:
        """Whether the file at ``key`` (see :func:`share_key`) is in this share."""
        return share_of(key, self.count) == self.number

    def __str__(self) -> str:
        return f"{self.number}/{self.count}"


def share_of(key: str, count: int) -> int:
    """Which of ``count`` shares (1-based) the file at ``key`` belongs to.

    A hash of the key's bytes, not Python's ``hash()``: that one changes with PYTHONHASHSEED, and
    every machine, Python version and run must agree. Keys are NFC-normalised first, since macOS
    spells accented names decomposed and Linux as typed; a name that is not valid UTF-8 hashes
    as the bytes on disk.
    """
    data = unicodedata.normalize("NFC", key).encode("utf-8", "surrogateescape")
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "big") % count + 1


def share_key(path: Path, root: Path) -> str:
    """What :func:`share_of` hashes: ``path`` relative to the PATH argument ``root`` it was found
    under, with ``/`` separators, so machines that mount the tree in different places agree; a
    file given as an argument itself is keyed by its name."""
    return path.name if path == root else path.relative_to(root).as_posix()


@dataclass
class Collected:
    """The files a run will index, and what the walk knows for ``--prune``."""

    items: list[IngestItem] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    folders: list[Path] = field(default_factory=list)  # resolved folders walked
    missing: list[Path] = field(default_factory=list)  # resolved roots that are gone (only with allow_missing)
    seen: set[str] = field(default_factory=set)  # every image file found under ``folders``, resolved
    shard: Shard | None = None  # the share taken, when the run took one
    found: int = 0  # files the walk found, in every share (``items`` holds this run's share)
    roots: list[Path] = field(default_factory=list)  # every root, resolved, in argument order (for shares)

    def owns(self, source_path: str) -> bool:
        """Whether an indexed file (its resolved ``source_path``) is in this run's share: keyed
        relative to the first root it lies under, as the walk keyed it. Without a shard, all are."""
        if self.shard is None:
            return True
        path = Path(source_path)
        root = next((r for r in self.roots if path == r or path.is_relative_to(r)), None)
        return self.shard.owns(share_key(path, root) if root is not None else path.as_posix())

    def keep_other_shares(self, indexed: Iterable[str]) -> None:
        """Count the ``indexed`` files outside this share as seen, so that ``--prune`` removes only
        the gone files of its own share: the others are the other machines' to judge."""
        self.seen.update(p for p in indexed if not self.owns(p))


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
    shard: tuple[int, int] | None = None,
) -> Collected:
    """Expand files and folders into items.

    Label precedence: the CSV row, then the parent folder's name, then ``label``. A missing root
    is an error (nothing is indexed), unless ``allow_missing`` (``--prune``: a deleted folder's
    images are to be removed). ``shard``: ``(K, N)`` keeps only share K of N (see :class:`Shard`);
    a file reached through two roots is keyed under the first, as every machine does alike.
    """
    csv_labels = read_labels_csv(labels_csv) if labels_csv else CsvLabels({}, [])
    out = Collected(skipped=list(csv_labels.problems), shard=Shard(*shard) if shard else None)
    files: list[tuple[Path, str]] = []  # (path, share key)
    csv_base = labels_csv.parent.resolve() if labels_csv and not paths else None
    for root in paths or list(csv_labels.rows):
        # Shares are keyed relative to the root: the argument itself, or for files that only the
        # CSV lists, the CSV's folder (where their paths are written from) when they lie under it.
        base = csv_base if csv_base is not None and root.is_relative_to(csv_base) else root
        if root.is_dir():
            found, others = walk_images(root, excludes)
            files += [(p, share_key(p, root)) for p in found]
            out.skipped += others
            out.folders.append(root.resolve())
            out.seen.update(str(p.resolve()) for p in found)
        elif root.is_file():
            files.append((root, share_key(root, base)))
        elif allow_missing:
            out.missing.append(root.absolute().resolve())
        else:  # a mistyped argument is an error, not a skip: nothing is indexed
            raise FileMissingError(f"No such file or folder: {root}")
        if base.absolute().resolve() not in out.roots:
            out.roots.append(base.absolute().resolve())
    seen_keys: set[Path] = set()
    for f, key in files:
        resolved = f.resolve()
        if resolved in seen_keys:
            continue
        seen_keys.add(resolved)
        out.found += 1
        if out.shard is not None and not out.shard.owns(key):
            continue
        item_label, item_description = label, description
        if labels_from_folders:
            item_label = resolved.parent.name
        if resolved in csv_labels.rows:
            item_label, item_description = csv_labels.rows[resolved][0], csv_labels.rows[resolved][1] or description
        out.items.append(IngestItem(f, item_label, item_description))
    return out


def under(path: str, roots: Iterable[Path]) -> bool:
    """Whether ``path`` (resolved) lies inside one of ``roots`` (resolved folders)."""
    return any(path == str(r) or path.startswith(str(r).rstrip(os.sep) + os.sep) for r in roots)
