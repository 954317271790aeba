"""Measure the shape of src/tether: module sizes, import circles, private seams.

    .venv/bin/python scripts/structure.py            # the summary
    .venv/bin/python scripts/structure.py --details  # every circle and access

Three figures, the ones docs/architecture.md and tests/test_structure.py hold
the code to:

* **lines** per module (the style guide's "small modules");
* **import circles**: groups of modules that import each other, directly or
  through others (imports under ``if TYPE_CHECKING:`` do not count: they cost
  nothing at run time and exist precisely to break circles);
* **private accesses across modules**: ``something._name`` where ``something``
  is not ``self`` or ``cls`` and no class or function of the same module
  defines ``_name``, plus ``from module import _name`` from another module:
  one module reaching into another's internals.
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


@dataclass
class Module:
    name: str
    path: Path
    lines: int
    imports: set[str] = field(default_factory=set)
    private: list[str] = field(default_factory=list)


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _runtime_nodes(tree: ast.AST, typing: bool = False) -> Iterator[ast.AST]:
    """Every node, minus the bodies of ``if TYPE_CHECKING:`` blocks unless ``typing``."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not typing and isinstance(child, ast.If) and _type_checking_only(child):
                stack.extend(child.orelse)
            else:
                stack.append(child)


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if node.level == 0:
        return node.module or ""
    base = module.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _defined_privates(tree: ast.AST) -> set[str]:
    """Underscored names a class or function of this module defines."""
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names.add(node.target.id)
    return {name for name in names if name.startswith("_")}


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def scan(root: Path = SRC / "tether", typing: bool = False) -> dict[str, Module]:
    modules: dict[str, Module] = {}
    paths = sorted(root.rglob("*.py"))
    known = {module_name(path) for path in paths}
    for path in paths:
        text = path.read_text()
        tree = ast.parse(text)
        name = module_name(path)
        module = Module(name, path, text.count("\n"))
        own = _defined_privates(tree)
        # Names bound by "import zlib" and the like: their _members (zlib._Compress,
        # a typing name) are another library's business, not a seam of ours.
        foreign = {
            (alias.asname or alias.name).split(".")[0]
            for node in ast.walk(tree)
            if isinstance(node, ast.Import)
            for alias in node.names
            if not alias.name.startswith("tether")
        }
        is_package = path.name == "__init__.py"
        for node in _runtime_nodes(tree, typing):
            if isinstance(node, ast.Import):
                module.imports.update(a.name for a in node.names if a.name in known)
            elif isinstance(node, ast.ImportFrom):
                target = _resolve(name, is_package, node)
                for alias in node.names:
                    child = f"{target}.{alias.name}"
                    if child in known:
                        module.imports.add(child)
                    elif target in known:
                        module.imports.add(target)
                        if _is_private(alias.name) and target != name:
                            module.private.append(f"from {target} import {alias.name}")
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and _is_private(node.attr)
                and node.attr not in own
                and not (
                    isinstance(node.value, ast.Name) and node.value.id in ("self", "cls", *foreign)
                )
            ):
                module.private.append(f"line {node.lineno}: .{node.attr}")
        module.imports.discard(name)
        modules[name] = module
    return modules


def circles(modules: dict[str, Module]) -> list[list[str]]:
    """Strongly connected groups of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(modules[node].imports):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(modules):
        if node not in index:
            visit(node)
    return sorted(found)


def measure() -> dict[str, object]:
    modules = scan()
    return {
        "modules": len(modules),
        "largest": sorted(((m.lines, n) for n, m in modules.items()), reverse=True)[:10],
        "over_600_lines": sorted(n for n, m in modules.items() if m.lines > 600),
        "circles": circles(modules),
        "circles_with_type_imports": circles(scan(typing=True)),
        "private_accesses": {n: m.private for n, m in sorted(modules.items()) if m.private},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--details", action="store_true", help="list every circle and access")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = measure()
    if args.json:
        print(json.dumps(figures, indent=1))
        return 0
    private = figures["private_accesses"]
    assert isinstance(private, dict)
    print(f"modules: {figures['modules']}")
    print("largest: " + ", ".join(f"{n} {lines}" for lines, n in figures["largest"]))  # type: ignore[attr-defined]
    print(f"over 600 lines: {figures['over_600_lines']}")
    print(f"import circles: {len(figures['circles'])}")  # type: ignore[arg-type]
    typed = figures["circles_with_type_imports"]
    print(f"import circles counting TYPE_CHECKING imports: {len(typed)}")  # type: ignore[arg-type]
    print(f"private accesses across modules: {sum(len(v) for v in private.values())}")
    if args.details:
        for group in figures["circles"]:  # type: ignore[attr-defined]
            print("  circle: " + " <-> ".join(group))
        for group in typed:  # type: ignore[attr-defined]
            print("  circle with TYPE_CHECKING imports: " + " <-> ".join(group))
        for name, accesses in private.items():
            print(f"  {name}: {len(accesses)}")
            for access in accesses:
                print(f"    {access}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
