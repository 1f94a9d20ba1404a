"""The package's structure, read from its import statements: no import circle, CuPy imported
by backend.py alone, the math written against ``xp`` only, no module reaching into another's
private names, and no source file much over 300 lines."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "gpumlp"
MATH = ("activations", "costs", "network", "optim", "dropout", "engines.steps", "train",
        "arraytypes")  # fmt: skip


def _modules() -> dict[str, Path]:
    """Dotted name (``gpumlp.cli.train``) -> file, for every module of the package."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _resolved(name: str, node: ast.ImportFrom) -> str:
    """The absolute module a ``from ... import`` of module ``name`` reads from."""
    package = name if MODULES[name].name == "__init__.py" else name.rsplit(".", 1)[0]
    if not node.level:
        return node.module or ""
    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
    return ".".join([*anchor, *([node.module] if node.module else [])])


def _imports(name: str, path: Path) -> list[tuple[str, ast.stmt]]:
    """(imported module, statement) for every import of ``path``, TYPE_CHECKING blocks left out
    (they are read by type checkers, not run)."""
    tree = ast.parse(path.read_text())
    out: list[tuple[str, ast.stmt]] = []

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, ast.Import):
                out.extend((alias.name, node) for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = _resolved(name, node)
                if node.module:  # `from . import x` imports x, not its package again
                    out.append((base, node))
                out.extend((f"{base}.{alias.name}", node) for alias in node.names)
            for field in ("body", "orelse", "finalbody", "handlers"):
                inner = getattr(node, field, None)
                if isinstance(inner, list) and inner and isinstance(inner[0], ast.stmt):
                    visit(inner)
                elif isinstance(inner, list):
                    for handler in inner:
                        if isinstance(handler, ast.ExceptHandler):
                            visit(handler.body)

    visit(tree.body)
    return out


MODULES = _modules()
GRAPH = {  # a module's parent packages are set up before it: importing them is no circle
    name: {
        dep
        for dep, _ in _imports(name, path)
        if dep in MODULES and dep != name and not name.startswith(dep + ".")
    }
    for name, path in MODULES.items()
}


def test_no_import_circle():
    done: set[str] = set()

    def walk(name: str, stack: list[str]) -> None:
        if name in stack:
            pytest.fail("import circle: " + " -> ".join([*stack[stack.index(name) :], name]))
        if name in done:
            return
        for dep in sorted(GRAPH[name]):
            walk(dep, [*stack, name])
        done.add(name)

    for name in MODULES:
        walk(name, [])


def test_cupy_is_imported_by_backend_alone():
    importers = {
        name
        for name, path in MODULES.items()
        for dep, _ in _imports(name, path)
        if dep == "cupy" or dep.startswith("cupy.")
    }
    assert importers == {"gpumlp.backend"}


@pytest.mark.parametrize("module", MATH)
def test_the_math_never_imports_numpy_or_cupy(module):
    name = f"gpumlp.{module}"
    deps = {dep.split(".")[0] for dep, _ in _imports(name, MODULES[name])}
    assert not deps & {"numpy", "cupy"}, f"{name} imports {deps & {'numpy', 'cupy'}}"


def test_no_module_imports_another_modules_private_names():
    offenders = [
        f"{name}: from {node.module} import {alias.name}"
        for name, path in MODULES.items()
        for _, node in _imports(name, path)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
        if alias.name.startswith("_")
        and not alias.name.startswith("__")
        and (node.module or "").split(".")[0] in ("", "gpumlp")  # another of gpumlp's modules
        and f"{_resolved(name, node)}.{alias.name}" not in MODULES  # a private module is fine
    ]
    assert not offenders, offenders


def test_no_source_file_is_much_over_300_lines():
    sources = [*PACKAGE.rglob("*.py"), *PACKAGE.rglob("*.cu")]
    assert PACKAGE / "engines" / "_kernels.cu" in sources
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in sources}
    assert {path: n for path, n in sizes.items() if n > 320} == {}


def test_the_walk_sees_the_imports():  # the checks above are worth something only if it does
    assert "gpumlp.backend" in GRAPH["gpumlp.network"]
    assert "gpumlp.runs.runner" in GRAPH["gpumlp.cli.train"]
    assert "gpumlp.engines._cupy_fast" in GRAPH["gpumlp.engines.select"]
    assert "gpumlp.engines.select" in GRAPH["gpumlp.engines"]


def test_the_wheel_carries_the_kernel_source(tmp_path):
    """The CUDA source is package data: a wheel built from the tree holds it beside its loader."""
    import subprocess
    import sys
    import zipfile

    root = PACKAGE.parents[1]
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
         "-w", str(tmp_path), str(root)],
        capture_output=True, text=True,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    (wheel,) = tmp_path.glob("gpumlp-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert {"gpumlp/engines/_kernels.cu", "gpumlp/engines/_kernels.py", "gpumlp/py.typed"} <= names
