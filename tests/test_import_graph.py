"""The house's import graph: no module of raysweep imports itself back through others (imports
inside functions included: they only hide a circle, they do not undo it), the plan stays low, and
few of raysweep's own imports hide inside functions (each says why it is there); and ruff, with
the project's rules, finds nothing anywhere."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "raysweep"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_module_name(p): p for p in PACKAGE.rglob("*.py")}


def _imports(path: Path) -> list[tuple[str, ast.stmt]]:
    """(raysweep module imported, the import statement) for every import in the file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found += [(alias.name, node) for alias in node.names
                      if alias.name.startswith("raysweep")]
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("raysweep"):
            for alias in node.names:  # `from raysweep import checkpoints` imports a module
                submodule = f"{node.module}.{alias.name}"
                found.append((submodule if submodule in MODULES else node.module, node))
    return found


def _graph() -> dict[str, set[str]]:
    """Module -> the raysweep modules importing it runs: what it names, and the packages
    (__init__.py) above each, which Python runs first (except the module's own packages: they
    are already running when it is imported)."""
    graph = {}
    for name, path in MODULES.items():
        targets = set()
        for imported, _ in _imports(path):
            parts = imported.split(".")
            targets |= {".".join(parts[:i]) for i in range(2, len(parts) + 1)}
        own_packages = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 1)}
        graph[name] = {t for t in targets if t in MODULES and t != name} - own_packages
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import circle, as the modules along it, or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return path[path.index(target):] + [target]
            if target not in state and (found := visit(target, path + [target])):
                return found
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start, [start])):
            return found
    return None


def test_no_module_of_raysweep_imports_itself_back():
    circle = _cycle(_graph())
    assert circle is None, "import circle: " + " -> ".join(circle)


def test_the_cycle_check_finds_a_circle_hidden_inside_a_function():
    graph = _graph()
    graph["raysweep.spec"].add("raysweep.plan")  # as if spec imported plan inside a function
    assert _cycle(graph) is not None


def test_the_plan_imports_nothing_of_raysweep_but_the_spec():
    assert _graph()["raysweep.plan"] <= {"raysweep.spec"}


def test_few_of_raysweeps_own_imports_hide_inside_functions_and_each_says_why():
    inside, total = [], 0
    for name, path in MODULES.items():
        lines = path.read_text().splitlines()
        for node in {id(node): node for _, node in _imports(path)}.values():  # statements
            total += 1
            if node.col_offset == 0:
                continue
            # Why: on the import's line, or above the block of imports it stands in.
            above = node.lineno - 2
            while lines[above].strip().startswith(("from ", "import ")):
                above -= 1
            said = "#" in lines[node.lineno - 1] or "#" in lines[above]
            inside.append((f"{path.relative_to(PACKAGE.parent)}:{node.lineno}", said))
    assert len(inside) < 0.1 * total, f"{len(inside)} of {total} inside functions: {inside}"
    assert all(said for _, said in inside), [where for where, said in inside if not said]


def test_ruff_finds_nothing_in_the_house():
    """pyproject.toml's rules (pyflakes, syntax, line length 100, import order) over the code,
    the tests, the benchmarks and the notebook: CI runs this, so a long line cannot land."""
    ruff = shutil.which("ruff", path=str(Path(sys.executable).parent)) or shutil.which("ruff")
    if ruff is None:
        pytest.skip("ruff is not installed (make test installs it: the dev extra)")
    done = subprocess.run([ruff, "check", "."], cwd=PACKAGE.parent, capture_output=True,
                          text=True, check=False)
    assert done.returncode == 0, done.stdout[-3000:]
