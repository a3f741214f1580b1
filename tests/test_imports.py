"""No module of waferscale imports a private (``_``-prefixed) name of another of its modules (other
libraries' private names, torch._ops, are theirs to keep stable)."""

import ast
from pathlib import Path

import waferscale

PACKAGE = Path(waferscale.__file__).parent


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_module_imports_a_private_name_of_another():
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text())
        where = path.relative_to(PACKAGE)
        imported = set()  # names bound to other modules here
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom):
                if not (node.level or (node.module or "").split(".")[0] == "waferscale"):
                    continue
                for a in node.names:
                    if _private(a.name):
                        source = "." * node.level + (node.module or "")
                        found.append(f"{where}:{node.lineno} from {source} import {a.name}")
                    imported.add(a.asname or a.name)
            elif isinstance(node, ast.Import):
                imported.update((a.asname or a.name).split(".")[0] for a in node.names
                                if a.name.split(".")[0] == "waferscale")
        for node in ast.walk(tree):
            if (isinstance(node, ast.Attribute) and _private(node.attr) and isinstance(node.value, ast.Name)
                    and node.value.id in imported):
                found.append(f"{where}:{node.lineno} {node.value.id}.{node.attr}")
    assert not found, "\n".join(found)
