"""The map of the code, checked: every import statement in bot/, core/ and adapters/, wherever it stands.

Imports inside functions and under ``TYPE_CHECKING`` count like any other: a circle a type
checker needs is still a circle a reader has to untangle.
- core's modules import each other in no circle;
- a wing of core imports only the wings below it (:data:`WINGS`, top first), and the few shared
  modules at core's top import no wing at all;
- adapters/ and bot/ import core's faces (``core``, ``core.<wing>`` or a shared top module), never
  a module inside a wing, and never reach through the service to its engine;
- no module of the product, and no test helper, is over 400 lines.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).parent.parent
# core's wings, from the top down: each may import the ones after it, never one before it.
WINGS = ("seed", "chat", "gallery", "render", "search", "models", "media", "storage")
SHARED = ("errors", "galleries", "records", "text")  # core's top: every wing may use them
MAX_LINES = 400


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def python_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


CORE = {module_name(p): p for p in python_files("core")}


def face_names(module: str) -> set[str]:
    """What a package's ``__init__`` offers in its ``__all__`` (empty for a plain module)."""
    path = CORE.get(module)
    if path is None or path.name != "__init__.py":
        return set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in node.targets):
            return {ast.literal_eval(e) for e in getattr(node.value, "elts", [])}
    return set()


def imported(path: Path) -> list[str]:
    """Every module ``path`` imports from clipbot's own packages (``from a import b`` is ``a.b``
    when that is a module, else ``a``), at any depth of the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            offered = face_names(node.module)  # a name a face offers is the face's, even if a module shares it
            found += [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in CORE and a.name not in offered
                      else node.module for a in node.names]
    return [name for name in found if name.split(".")[0] in ("core", "adapters", "bot")]


def core_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = defaultdict(set)
    for name, path in CORE.items():
        for target in imported(path):
            while target not in CORE and "." in target:
                target = target.rsplit(".", 1)[0]
            if target in CORE and target != name:
                edges[name].add(target)
    return edges


def wing_of(module: str) -> str:
    """``chat`` for ``core.chat.service`` or ``core.chat``; ``top`` for ``core.errors`` and ``core``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in WINGS else "top"


def test_the_wings_and_the_shared_modules_are_all_there_is() -> None:
    tops = sorted(p.stem for p in (ROOT / "core").glob("*.py") if p.stem != "__init__")
    assert tops == sorted(SHARED) and len(SHARED) <= 6
    assert sorted(p.name for p in (ROOT / "core").iterdir() if p.is_dir() and p.name != "__pycache__") == sorted(WINGS)
    for wing in WINGS:
        face = ast.parse((ROOT / "core" / wing / "__init__.py").read_text())
        assert any(isinstance(n, ast.Assign) and any(getattr(t, "id", "") == "__all__" for t in n.targets)
                   for n in face.body), f"core/{wing}/__init__.py has no __all__"


def test_core_has_no_import_circle() -> None:
    edges = core_edges()
    state: dict[str, int] = {}
    path: list[str] = []
    circles: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        path.append(module)
        for target in sorted(edges[module]):
            if state.get(target) == 1:
                circles.append(" -> ".join([*path[path.index(target):], target]))
            elif target not in state:
                visit(target)
        path.pop()
        state[module] = 2

    for module in sorted(CORE):
        if module not in state:
            visit(module)
    assert circles == []


def test_no_wing_imports_a_wing_above_it() -> None:
    rank = {wing: n for n, wing in enumerate(WINGS)}
    upward = []
    for source, targets in core_edges().items():
        if source == "core":  # the package face: it gathers what the wings offer
            continue
        for target in targets:
            here, there = wing_of(source), wing_of(target)
            if here == there or target == "core":
                if target == "core":
                    upward.append(f"{source} -> core (the face)")
                continue
            if here == "top" or (there != "top" and rank[there] < rank[here]):
                upward.append(f"{source} -> {target}")
    assert upward == []


@pytest.mark.parametrize("folder", ["adapters", "bot"])
def test_front_ends_and_bot_import_only_faces(folder: str) -> None:
    inside = []
    for path in python_files(folder):
        for target in imported(path):
            parts = target.split(".")
            if parts[0] == "core" and len(parts) > 2 and parts[1] in WINGS:
                inside.append(f"{path.relative_to(ROOT)}: {target}")
            if parts[0] == "core" and len(parts) == 2 and parts[1] not in (*WINGS, *SHARED):
                inside.append(f"{path.relative_to(ROOT)}: {target}")
    assert inside == []


def test_no_front_end_reaches_through_the_service() -> None:
    reaches = []
    for path in python_files("adapters", "bot"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Attribute) and node.attr in ("engine", "limiter"):
                owner = ast.unparse(node.value)
                if "service" in owner:
                    reaches.append(f"{path.relative_to(ROOT)}:{node.lineno} {owner}.{node.attr}")
            if isinstance(node, ast.Attribute) and node.attr == "sighting_retention_s":
                reaches.append(f"{path.relative_to(ROOT)}:{node.lineno} sets the engine's sighting retention")
    assert reaches == []


def test_no_module_is_over_400_lines() -> None:
    helpers = [p for p in python_files("tests") if not p.name.startswith("test_")]
    long = [f"{p.relative_to(ROOT)}: {n}" for p in (*python_files("core", "bot", "adapters"), *helpers)
            if (n := len(p.read_text().splitlines())) > MAX_LINES]
    assert long == []
