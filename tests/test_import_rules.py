"""The layering of kubelab's packages, read from every module's AST (issue 10, docs/architecture.md).

* ``core`` sits below ``spawner`` and ``jobs`` and imports neither;
* there is no cycle between packages;
* no module imports another kubelab package inside a function: a dependency is declared at the
  top of the module, where this test (and a reader) sees it. Imports only for type checking
  (``if TYPE_CHECKING:``) are not run and create no runtime dependency.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("core", "hub_config", "spawner", "jobs", "widgets", "devcluster", "admin")
#: What each package may import (besides itself); anything else is a layering error.
ALLOWED = {
    "core": set(),
    "devcluster": set(),  # the stand-in kubelet knows nothing of the platform
    "jobs": {"core"},
    "spawner": {"core"},
    "widgets": {"jobs"},
    "admin": {"core", "jobs", "spawner"},  # the admin page and GPU accounting read what the others hold
    "hub_config": {"core", "spawner", "jobs", "devcluster", "admin"},
}


def modules() -> Iterator[tuple[str, Path]]:
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            yield package, path


def dotted(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return "kubelab." + ".".join(parts)


def imported(node: ast.Import | ast.ImportFrom, module: str, is_package: bool) -> list[str]:
    """The absolute module names an import statement names."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names]
    if node.level:
        base = module.split(".")
        if not is_package:
            base = base[:-1]
        base = base[: len(base) - (node.level - 1)]
        prefix = ".".join(base)
        if node.module:
            return [f"{prefix}.{node.module}"]
        return [f"{prefix}.{a.name}" for a in node.names]
    return [node.module or ""]


def package_of(name: str) -> str | None:
    parts = name.split(".")
    return parts[1] if len(parts) > 1 and parts[0] == "kubelab" and parts[1] in PACKAGES else None


class Imports(ast.NodeVisitor):
    """Collects (name, line, in_function) of every runtime import."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.module = module
        self.is_package = is_package
        self.found: list[tuple[str, int, bool]] = []
        self._depth = 0

    def visit_If(self, node: ast.If) -> None:
        test = node.test
        if (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
                isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"):
            for child in node.orelse:
                self.visit(child)
            return
        self.generic_visit(node)

    def _function(self, node: ast.AST) -> None:
        self._depth += 1
        self.generic_visit(node)
        self._depth -= 1

    visit_FunctionDef = visit_AsyncFunctionDef = visit_Lambda = _function

    def visit_Import(self, node: ast.Import) -> None:
        for name in imported(node, self.module, self.is_package):
            self.found.append((name, node.lineno, self._depth > 0))

    visit_ImportFrom = visit_Import  # type: ignore[assignment]


def all_imports() -> list[tuple[str, str, str, int, bool]]:
    """(package, module, imported name, line, inside a function) for every kubelab import."""
    out = []
    for package, path in modules():
        visitor = Imports(dotted(path), path.name == "__init__.py")
        visitor.visit(ast.parse(path.read_text(), str(path)))
        for name, line, in_function in visitor.found:
            if package_of(name):
                out.append((package, str(path.relative_to(REPO)), name, line, in_function))
    return out


def test_the_scan_sees_every_package() -> None:
    seen = {package for package, *_ in all_imports()}
    assert {"core", "jobs", "spawner", "hub_config", "widgets"} <= seen


def test_no_kubelab_import_inside_a_function() -> None:
    offenders = [f"{path}:{line}: {name}" for _, path, name, line, in_function in all_imports() if in_function]
    assert offenders == [], "import these at the top of the module:\n" + "\n".join(offenders)


def test_core_imports_neither_spawner_nor_jobs() -> None:
    offenders = [f"{path}:{line}: {name}" for package, path, name, line, _ in all_imports()
                 if package == "core" and package_of(name) in ("spawner", "jobs")]
    assert offenders == []


@pytest.mark.parametrize("package", PACKAGES)
def test_each_package_imports_only_what_it_sits_on(package: str) -> None:
    offenders = [f"{path}:{line}: {name}" for pkg, path, name, line, _ in all_imports()
                 if pkg == package and package_of(name) not in (package, *ALLOWED[package])]
    assert offenders == [], f"{package} may import only {sorted(ALLOWED[package]) or 'nothing else'}"


def test_no_cycle_between_packages() -> None:
    edges: dict[str, set[str]] = {p: set() for p in PACKAGES}
    for package, _, name, _, _ in all_imports():
        target = package_of(name)
        if target and target != package:
            edges[package].add(target)

    def cycle_from(start: str, node: str, path: list[str]) -> list[str] | None:
        for nxt in sorted(edges[node]):
            if nxt == start:
                return [*path, nxt]
            if nxt not in path:
                found = cycle_from(start, nxt, [*path, nxt])
                if found:
                    return found
        return None

    cycles = [c for p in PACKAGES if (c := cycle_from(p, p, [p]))]
    assert cycles == []


SAMPLE = '''
from typing import TYPE_CHECKING
import kubelab.core.naming
from . import sibling
if TYPE_CHECKING:
    from kubelab.jobs.service import JobsService
def f():
    from kubelab.spawner import LabSpawner
'''


def test_the_scanner_itself_finds_function_level_and_relative_imports() -> None:
    """The rules above could pass vacuously if the scanner missed imports; it does not."""
    visitor = Imports("kubelab.core.example", is_package=False)
    visitor.visit(ast.parse(SAMPLE))
    assert visitor.found == [("typing", 2, False), ("kubelab.core.naming", 3, False),
                             ("kubelab.core.sibling", 4, False), ("kubelab.spawner", 8, True)]
