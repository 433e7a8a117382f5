"""No import cycles between the project's modules (an AST check that runs in CI with the suite).

Every ``import`` and ``from ... import`` in sdk/, training/, export/ and calibration/ counts, at module
level or inside a function (a lazy import hides a cycle from Python, not from the reader); imports under
``if TYPE_CHECKING:`` do not, since they never run. ``from pkg import name`` points at the submodule
``pkg.name`` when there is one, else at ``pkg`` itself.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = {
    "sdk": "facesdk",
    "training": "facesdk.training",
    "export": "facesdk.export",
    "calibration": "facesdk.calibration",
}

# Cycles tolerated for now, each the frozenset of one cycle's modules, with the reason and the work that
# removes it. The stream engine (sdk/analyzer.py, stream_runner.py, multistream.py, scheduling.py,
# tracking.py, streams.py, demo.py) is being restructured under its own issue; a cycle among those
# modules would be listed here until that work lands, e.g.
#     frozenset({"facesdk.analyzer", "facesdk.multistream"}),  # stream engine issue
# Today there is none (analyzer and multistream name each other only under TYPE_CHECKING): keep it empty.
ALLOWED_CYCLES: set[frozenset[str]] = set()


def module_files(root: Path = ROOT, packages: dict[str, str] = PACKAGES) -> dict[str, Path]:
    """Every module of the folders by its import name (``facesdk.faces.detector``)."""
    found: dict[str, Path] = {}
    for folder, package in packages.items():
        base = root / folder
        for path in sorted(base.rglob("*.py")):
            parts = list(path.relative_to(base).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join([package, *parts])] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _import_nodes(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Import statements anywhere in the tree, except the bodies of ``if TYPE_CHECKING:``."""
    out: list[ast.Import | ast.ImportFrom] = []
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            out.append(node)
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))
    return out


def _resolve(name: str, path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for _ in range(node.level - 1):
        package = package.rpartition(".")[0]
    return f"{package}.{node.module}" if node.module else package


def _owner(target: str, modules: dict[str, Path]) -> str | None:
    """The project module ``target`` names, or the nearest enclosing one (``facesdk.x.y`` -> ``facesdk.x``)."""
    while target:
        if target in modules:
            return target
        target = target.rpartition(".")[0]
    return None


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Module name -> the project modules it imports."""
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        edges: set[str] = set()
        for node in _import_nodes(ast.parse(path.read_text(), filename=str(path))):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            else:
                base = _resolve(name, path, node)
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            edges.update(t for t in map(lambda t: _owner(t, modules), targets) if t and t != name)
        graph[name] = edges
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components with more than one module (each a set of cycles)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def visit(start: str) -> None:
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        on_stack.add(start)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        item = stack.pop()
                        on_stack.discard(item)
                        component.append(item)
                        if item == node:
                            break
                    if len(component) > 1:
                        out.append(sorted(component))

    for name in sorted(graph):
        if name not in index:
            visit(name)
    return out


def one_cycle(graph: dict[str, set[str]], component: list[str]) -> list[str]:
    """A shortest import cycle through the component's first module, as a path that returns to it."""
    members = set(component)
    start = component[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(graph[node] & members):
            if nxt == start:
                return [*paths[node], start]
            if nxt not in paths:
                paths[nxt] = [*paths[node], nxt]
                queue.append(nxt)
    raise AssertionError(f"no cycle through {start}")  # a component of two or more always has one


def test_no_import_cycles() -> None:
    graph = import_graph(module_files())
    components = [c for c in strongly_connected(graph) if frozenset(c) not in ALLOWED_CYCLES]
    described = [
        " -> ".join(one_cycle(graph, c)) + f"  (modules in the cycle: {', '.join(c)})" for c in components
    ]
    assert not described, "import cycles:\n" + "\n".join(described)


def test_every_allowed_cycle_still_exists() -> None:
    """An allowance outlives its cycle only by mistake: remove it when the cycle is gone."""
    found = {frozenset(c) for c in strongly_connected(import_graph(module_files()))}
    assert not ALLOWED_CYCLES - found, (
        f"no longer cycles, remove from ALLOWED_CYCLES: {ALLOWED_CYCLES - found}"
    )


def _tree(root: Path, files: dict[str, str]) -> dict[str, Path]:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return module_files(root, {"pkg": "facesdk"})


def test_a_lazy_import_cycle_is_found_and_named(tmp_path: Path) -> None:
    modules = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from .b import thing\n",
            "pkg/sub/__init__.py": "",
            "pkg/sub/b.py": "def f():\n    from facesdk import a\n",
            "pkg/b.py": "from .sub import b\n",
        },
    )
    graph = import_graph(modules)
    assert graph["facesdk.a"] == {"facesdk.b"} and graph["facesdk.b"] == {"facesdk.sub.b"}
    assert graph["facesdk.sub.b"] == {"facesdk.a"}  # a function-level import counts
    [component] = strongly_connected(graph)
    assert one_cycle(graph, component) == ["facesdk.a", "facesdk.b", "facesdk.sub.b", "facesdk.a"]


def test_type_checking_imports_do_not_count(tmp_path: Path) -> None:
    modules = _tree(
        tmp_path,
        {
            "pkg/__init__.py": "",
            "pkg/a.py": "from . import b\n",
            "pkg/b.py": (
                "import typing\nfrom typing import TYPE_CHECKING\n"
                "if TYPE_CHECKING:\n    from .a import A\nelse:\n    import os\n"
                "if typing.TYPE_CHECKING:\n    import facesdk.a\n"
            ),
        },
    )
    assert strongly_connected(import_graph(modules)) == []
