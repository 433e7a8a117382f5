"""Import paths that outlived a move: README.md and docs/ name them, so they keep working.

Every dotted ``facesdk.*`` name in README.md and docs/ resolves to a module or an attribute (ONNX
metadata keys such as ``facesdk.sha256`` aside); each module path kept when ``sdk/`` was regrouped
(``facesdk.pipeline`` is now ``facesdk.faces.analysis``, ...) hands out the moved module's own objects,
and no project module imports through one: the shims serve users, not the code.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import tomllib

from facesdk.contract.export_manifest import ONNX_METADATA_KEYS
from facesdk.contract.integrity import ONNX_DIGEST_KEY
from tests.test_import_cycles import import_graph, module_files

ROOT = Path(__file__).resolve().parents[1]

MOVED = {
    "facesdk.integrity": "facesdk.contract.integrity",
    "facesdk.manifest_schema": "facesdk.contract.schema",
    "facesdk.export_manifest": "facesdk.contract.export_manifest",
    "facesdk.pipeline": "facesdk.faces.analysis",
    "facesdk.backends.select": "facesdk.auto.choice",
}
"""Old module path (documented before the move) -> the module that holds the code now."""

ENTRY_POINT_GROUPS = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"])
NOT_MODULES = {*ONNX_METADATA_KEYS.values(), ONNX_DIGEST_KEY, *ENTRY_POINT_GROUPS}
"""Dotted ``facesdk.*`` strings the docs use as ONNX ``metadata_props`` keys or as entry-point
groups (``facesdk.commands``, declared in pyproject.toml), not as imports."""

DOTTED = re.compile(r"(?<![\w./-])(facesdk(?:\.[A-Za-z_]\w*)+)")


def documented_names() -> dict[str, list[str]]:
    """Every dotted ``facesdk.*`` name in README.md and docs/ -> the pages that name it."""
    found: dict[str, list[str]] = {}
    for page in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]:
        for name in DOTTED.findall(page.read_text()):
            pages = found.setdefault(name, [])
            if (rel := page.relative_to(ROOT).as_posix()) not in pages:
                pages.append(rel)
    return {name: pages for name, pages in found.items() if name not in NOT_MODULES}


def resolve(name: str) -> Any:
    """The module or attribute a dotted name denotes: its longest importable prefix, then attributes."""
    parts = name.split(".")
    for i in range(len(parts), 0, -1):
        module_name = ".".join(parts[:i])
        try:
            found: Any = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if not exc.name or not f"{module_name}.".startswith(f"{exc.name}."):
                raise  # a dependency is missing, not this module or a package above it
            continue
        for attr in parts[i:]:
            found = getattr(found, attr)
        return found
    raise AssertionError(f"nothing of {name} imports")


DOCUMENTED = documented_names()


@pytest.mark.parametrize("name", sorted(DOCUMENTED))
def test_a_documented_name_resolves(name: str) -> None:
    try:
        resolve(name)
    except (ImportError, AttributeError) as exc:
        pytest.fail(f"{name} ({', '.join(DOCUMENTED[name])}) does not resolve: {exc!r}")


def test_the_docs_scan_finds_names_and_skips_metadata_keys() -> None:
    assert "facesdk.faces.analysis.analyze_faces" in DOCUMENTED
    assert "facesdk.sha256" not in DOCUMENTED and "facesdk.summary" not in DOCUMENTED
    with pytest.raises(AttributeError):
        resolve("facesdk.faces.analysis.no_such_function")
    with pytest.raises(AssertionError):
        resolve("facesdk_nosuch.x")


@pytest.mark.parametrize(("old", "new"), sorted(MOVED.items()))
def test_an_old_module_path_hands_out_the_moved_objects(old: str, new: str) -> None:
    shim: ModuleType = importlib.import_module(old)
    module = importlib.import_module(new)
    exported = set(shim.__all__)
    assert set(module.__all__) <= exported, f"{old} lacks {sorted(set(module.__all__) - exported)}"
    copies = [name for name in exported if getattr(shim, name) is not getattr(module, name)]
    assert not copies, f"{old} holds its own {copies}: re-export them from {new}"


def test_no_project_module_imports_through_a_kept_path() -> None:
    graph = import_graph(module_files())
    through = {name: sorted(edges & set(MOVED)) for name, edges in graph.items() if edges & set(MOVED)}
    assert through == {}, "import from the new module, not the path kept for users"
