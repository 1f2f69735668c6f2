"""The package's shape: no import circles, each layer importing only the layers below it,
a docstring on every module, and README's layout in step with the tree.

Imports are read from the source with ``ast`` (every ``import`` statement, including those
inside functions), not by importing anything, so a circle that Python happens to tolerate
at run time still fails here.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "asymlib"

#: Bottom to top; a module may import from its own layer and the layers before it.
LAYERS = ("core", "sections", "reports", "execution")


def module_name(path: Path, root: Path = PACKAGE) -> str:
    parts = path.relative_to(root.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, root: Path = PACKAGE) -> set[str]:
    """The modules of the package that ``path`` imports (``from . import x`` counts as ``.x``)."""
    name = module_name(path, root)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.add(target)
            found.update(f"{target}.{alias.name}" for alias in node.names)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """Module -> the package's modules it imports (itself left out)."""
    files = {module_name(path, root): path for path in sorted(root.rglob("*.py"))}
    return {
        name: {target for target in imported_modules(path, root) if target in files and target != name}
        for name, path in files.items()
    }


def find_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every circle a depth-first walk meets, each as [a, b, ..., a]."""
    state, stack, circles = {}, [], []

    def visit(module: str) -> None:
        state[module] = "open"
        stack.append(module)
        for target in sorted(graph[module]):
            if state.get(target) == "open":
                circles.append(stack[stack.index(target) :] + [target])
            elif target not in state:
                visit(target)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    return circles


def layer_of(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.index(parts[1]) if len(parts) > 1 and parts[1] in LAYERS else None


def test_no_import_circles():
    assert find_circles(import_graph()) == []


def test_the_circle_finder_finds_a_circle(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub import b\n")
    (package / "sub" / "b.py").write_text("def f():\n    from ..c import g\n")
    (package / "c.py").write_text("import pkg.a\n")
    graph = import_graph(package)
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"}
    assert find_circles(graph) == [["pkg.a", "pkg.sub.b", "pkg.c", "pkg.a"]]


def test_each_layer_imports_only_the_layers_below_it():
    upward = [
        f"{module} imports {target}"
        for module, targets in import_graph().items()
        for target in targets
        if layer_of(module) is not None and layer_of(target) is not None and layer_of(target) > layer_of(module)
    ]
    assert upward == []


def test_every_module_is_in_a_layer():
    loose = [m for m in import_graph() if layer_of(m) is None and m not in ("asymlib", "asymlib.__main__")]
    assert loose == []


@pytest.mark.parametrize("path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(REPO)))
def test_every_module_says_what_it_owns(path):
    docstring = ast.get_docstring(ast.parse(path.read_text()))
    assert docstring and len(docstring.split()) >= 8, f"{path} needs a docstring saying what it owns"


def _readme_layout() -> str:
    readme = (REPO / "README.md").read_text()
    match = re.search(r"## Layout\n.*?```\n(.*?)```", readme, re.S)
    assert match, "README.md has no ## Layout section with a code block"
    return match.group(1)


def test_readme_layout_names_every_module_and_folder():
    """Each line of the layout block is indented under its folder; every module and folder
    of the package appears, and nothing that is not there."""
    listed, folders = set(), []
    for line in _readme_layout().splitlines():
        if not line.strip():
            continue
        depth = (len(line) - len(line.lstrip())) // 2
        entry = line.split()[0]
        folders = folders[:depth]
        if entry.endswith("/"):
            folders.append(entry.rstrip("/"))
            listed.add("/".join(folders))
        elif entry.endswith(".py"):
            listed.add("/".join(folders + [entry]))
    actual = {str(p.relative_to(REPO)) for p in PACKAGE.rglob("*.py") if p.name != "__init__.py"}
    actual |= {str(p.relative_to(REPO)) for p in PACKAGE.rglob("*") if p.is_dir() and p.name != "__pycache__"}
    actual.add("asymlib")
    in_package = {entry for entry in listed if entry.split("/")[0] == "asymlib"}
    assert in_package == actual
