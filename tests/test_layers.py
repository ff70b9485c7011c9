"""Layers point one way: no module imports a package above its own, lazily or not, and packages form no cycle.

The order, bottom to top: ``strict``/``rundir`` -> ``sandbox`` -> ``tasks`` -> ``env`` -> ``models`` ->
``judges`` -> ``knowledge`` and ``train`` -> ``evals`` -> (``interop``) -> ``report`` -> ``pipeline``. Each package's
``cli.py`` (and the top ``rhlab.cli``) is an entry point above them all.
"""

from __future__ import annotations

import ast
from pathlib import Path

import rhlab

SRC = Path(rhlab.__file__).parent

LAYER: dict[str, float] = {
    "strict": 0,
    "rundir": 0,
    "sandbox": 1,
    "tasks": 2,
    "env": 3,
    "models": 4,
    "judges": 5,
    "knowledge": 6,
    "train": 6,
    "evals": 7,
    "interop": 7.5,
    "report": 8,
    "pipeline": 9,
    "doctor": 10,
}
"""``interop`` (Inspect AI tasks, scorers and logs over rhlab's evals) sits above the evals it wraps
and below the report, which shows Inspect logs' score tables; ``doctor`` (``rhlab doctor``, a command
module) may read any layer."""
ENTRY = 99
"""``cli.py`` modules and ``rhlab/__init__``: entry points above every layer."""

ALLOWED: dict[tuple[str, str], str] = {
    ("report", "pipeline"): "the report completes the arm x seed matrix (missing runs) from the experiment config",
    ("evals", "pipeline"): "the probe comparison orders arms as the experiment config lists them",
}
"""Upward edges accepted for now, each with its reason (at most two)."""


def _package(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != "rhlab" or len(parts) < 2:
        return None
    return parts[1]


def _resolve(path: Path, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    package = list(path.relative_to(SRC.parent).with_suffix("").parts)
    base = package[: len(package) - node.level]
    return ".".join([*base, *(node.module.split(".") if node.module else [])])


def _imports(path: Path) -> set[str]:
    """Every module ``path`` imports anywhere: top level, in functions, under ``TYPE_CHECKING``."""
    tree = ast.parse(path.read_text(), str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(path, node)
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", "")) == (
            "import_module"
        ):
            if node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str):
                found.add(node.args[0].value)
    return {m for m in found if m.startswith("rhlab.")}


def _edges() -> dict[tuple[str, str], list[str]]:
    """``(importing package, imported package) -> [importing files]`` between different packages."""
    edges: dict[tuple[str, str], list[str]] = {}
    for path in sorted(SRC.rglob("*.py")):
        rel = path.relative_to(SRC)
        if rel.name == "cli.py" or rel == Path("__init__.py"):
            continue  # entry points: above every layer
        source = rel.parts[0].removesuffix(".py")
        for module in _imports(path):
            target = _package(module)
            if target is None or target == source or target not in LAYER or module.endswith(".cli"):
                continue
            edges.setdefault((source, target), []).append(str(rel))
    return edges


def test_every_package_has_a_layer() -> None:
    packages = {p.name.removesuffix(".py") for p in SRC.iterdir() if p.name not in ("__init__.py", "cli.py")}
    packages = {p for p in packages if not p.startswith("_")}
    assert packages == set(LAYER), "give each new package a place in LAYER (and the README's layer list)"


def test_no_module_imports_a_package_above_its_own() -> None:
    upward = {(a, b): files for (a, b), files in _edges().items() if LAYER[b] > LAYER[a] and (a, b) not in ALLOWED}
    listing = "\n".join(f"  {a} -> {b}: {sorted(set(f))}" for (a, b), f in upward.items())
    assert not upward, "upward imports:\n" + listing
    assert len(ALLOWED) <= 2


def test_no_import_cycle_between_packages() -> None:
    graph: dict[str, set[str]] = {}
    for a, b in _edges():
        if (a, b) not in ALLOWED:  # an accepted upward edge closes a loop by definition; it is listed above
            graph.setdefault(a, set()).add(b)
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            raise AssertionError("import cycle between packages: " + " -> ".join(cycle))


def test_the_walker_sees_lazy_and_relative_imports(tmp_path: Path) -> None:
    probe = SRC / "env" / "oracle.py"  # any real module: the walker must see function-level imports too
    lazy = ast.parse("def f():\n    from rhlab.pipeline.config import X\n    import rhlab.report.numbers\n")
    names = {
        n.module if isinstance(n, ast.ImportFrom) else n.names[0].name
        for n in ast.walk(lazy)
        if isinstance(n, ast.Import | ast.ImportFrom)
    }
    assert names == {"rhlab.pipeline.config", "rhlab.report.numbers"}
    assert all(m.startswith("rhlab.") for m in _imports(probe))
    relative = ast.parse("from ..train import metrics\n").body[0]
    assert isinstance(relative, ast.ImportFrom)
    assert _resolve(SRC / "report" / "numbers.py", relative) == "rhlab.train"
