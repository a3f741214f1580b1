"""The package's shape: no import cycles (function-level imports included), data flowing down
frontend -> ir -> passes -> backends -> runtime -> report without coming back up, and one
block split for the kernels, the PE level and the placed numerics."""

import ast
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

import waferscale
from waferscale.backends.blocks import slices, split
from waferscale.runtime.pe_layout import blocks

ROOT = Path(waferscale.__file__).parent


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every waferscale module -> the waferscale modules it imports, anywhere in its body."""
    modules = {_module(p): p for p in ROOT.rglob("*.py")}
    out = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name}
        out[name] = deps
    return out


def test_no_import_cycles_even_through_function_level_imports():
    g = nx.DiGraph([(a, b) for a, deps in _imports().items() for b in deps])
    cycles = list(nx.simple_cycles(g))
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c + c[:1]) for c in cycles)


@pytest.mark.parametrize("package,forbidden", [
    ("runtime", ("passes", "report", "driver", "cli", "frontend")),
    ("backends", ("passes", "runtime", "report", "driver", "cli", "frontend")),
    ("ir", ("frontend", "passes", "backends", "runtime", "report", "driver", "cli")),
    ("frontend", ("passes", "backends", "runtime", "report", "driver", "cli")),
    ("passes", ("report", "driver", "cli", "frontend")),
])
def test_data_flows_down_the_stages(package, forbidden):
    bad = {(m, d) for m, deps in _imports().items() if m.startswith(f"waferscale.{package}") for d in deps
           if any(d == f"waferscale.{f}" or d.startswith(f"waferscale.{f}.") for f in forbidden)}
    assert not bad, sorted(bad)


def test_package_docstrings_say_what_is_there():
    for init in ROOT.rglob("__init__.py"):
        doc = ast.get_docstring(ast.parse(init.read_text())) or ""
        assert doc, init
        for stale in ("not built yet", "planned", "next stage"):
            assert stale not in doc, (init, stale)


@pytest.mark.parametrize("size,parts,tail,want", [
    (13, 3, 0, [5, 4, 4]), (12, 3, 0, [4, 4, 4]), (2, 4, 0, [1, 1, 0, 0]), (13, 3, 2, [5, 5, 3]),
    (10, 3, 5, [5, 5, 0]), (4, 3, 5, [3, 1, 0]), (0, 2, 0, [0, 0]),
])
def test_one_block_split(size, parts, tail, want):
    assert split(size, parts, tail) == want
    assert sum(want) == size
    sizes, offsets = blocks(size, parts) if not tail else (None, None)
    if sizes is not None:  # the PE level lays operands out with the same split
        assert list(sizes) == want and list(offsets) == list(np.cumsum([0] + want[:-1]))
        assert [s.stop - s.start for s in slices(size, parts)] == [w for w in want if w]
