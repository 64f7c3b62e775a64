"""The package's layering, read from the source with ast (every import, at module level or inside
a function): which layer may import which, and no import cycle among icl_compiler's modules."""
from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent / "icl_compiler"

# what each part of the package may import from icl_compiler (besides itself); lowest first
ALLOWED = {
    "errors": set(),
    "targets": {"errors"},
    "ir": {"errors", "targets"},
    "frontend": {"errors", "ir"},
    "semantics": {"errors", "ir", "targets"},
    "options": {"errors", "targets"},
    "passes": {"errors", "ir", "targets", "semantics", "options"},
    "backends": {"errors", "ir", "targets", "semantics"},
    "runtime": {"errors", "ir", "targets", "semantics", "backends"},
    "compiler": {"errors", "ir", "targets", "semantics", "options", "frontend", "passes",
                 "runtime"},
    "cli": {"errors", "options", "compiler", "runtime", "backends"},
    "__init__": {"compiler", "errors", "runtime"},
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {module_name(p): p for p in ROOT.rglob("*.py")}


MODULES = _modules()


def imports_of(name: str, path: Path) -> set[str]:
    """The icl_compiler modules that ``name`` imports (``from a import b`` names module a.b when
    b is a module, else a), resolving relative imports."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in MODULES else mod
                       for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in MODULES:  # "import icl_compiler.x.y as z" of a module
                t = t.rpartition(".")[0]
            if t.startswith("icl_compiler") and t:
                out.add(t)
    return out


GRAPH = {name: imports_of(name, path) for name, path in MODULES.items()}


def part(module: str) -> str:
    parts = module.split(".")
    return "__init__" if len(parts) == 1 else parts[1]


def test_the_walk_sees_the_imports():
    # a guard against a walk that finds nothing: known edges, one of them inside a function
    assert "icl_compiler.semantics.interpreter" in GRAPH["icl_compiler.passes.quantise"]
    assert "icl_compiler.backends.numpy" in GRAPH["icl_compiler.runtime.program"]
    assert "icl_compiler.semantics.fixed" in GRAPH["icl_compiler.semantics.neurons"]
    assert set(ALLOWED) >= {part(m) for m in MODULES}


@pytest.mark.parametrize("module", sorted(MODULES))
def test_layering(module):
    own = part(module)
    bad = sorted(t for t in GRAPH[module] if part(t) != own and part(t) not in ALLOWED[own])
    assert not bad, f"{module} ({own}) must not import {bad}"


def test_rules_of_issue_14():
    for m, deps in GRAPH.items():
        if m.startswith("icl_compiler.passes"):
            assert not any(d.startswith("icl_compiler.backends") for d in deps), m
        if m.startswith("icl_compiler.backends"):
            assert not any(d.startswith("icl_compiler.passes") for d in deps), m
        if m.startswith("icl_compiler.backends.lava"):
            assert not any(d.startswith("icl_compiler.backends.numpy") for d in deps), m
        if m.startswith("icl_compiler.semantics"):
            assert not any(d.startswith(("icl_compiler.passes", "icl_compiler.backends",
                                         "icl_compiler.runtime")) for d in deps), m
        if m.startswith("icl_compiler.runtime") or m == "icl_compiler.cli":
            assert not any(d.startswith("icl_compiler.passes") for d in deps), m


def test_no_import_cycle():
    g = nx.DiGraph()
    g.add_nodes_from(GRAPH)
    g.add_edges_from((m, d) for m, deps in GRAPH.items() for d in deps if d != m)
    cycles = list(nx.simple_cycles(g))
    assert not cycles, f"import cycles: {cycles[:3]}"


def test_no_file_over_600_lines():
    long = {str(p.relative_to(ROOT)): n for p in ROOT.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 600}
    assert not long
