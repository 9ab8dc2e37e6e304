"""The package's layers (issue 13): the light commands load no image or metric library, no
library module reaches up into the command line, and no two modules import each other."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "harness"
HEAVY = ("cv2", "pycocotools", "onnxruntime", "openvino", "onnx")


@pytest.mark.parametrize("module", ["harness.collector", "harness.nightly", "harness.history",
                                    "harness.history.html", "harness.cli"])
def test_light_modules_load_no_image_or_metric_library(module):
    code = (f"import sys, {module}; "
            f"print(' '.join(m for m in {HEAVY!r} + ('numpy',) if m in sys.modules))")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = set(got.stdout.split())
    assert not loaded & set(HEAVY), f"import {module} loads {sorted(loaded)}"
    if module != "harness.history.html":  # which draws with numpy (its sparklines)
        assert "numpy" not in loaded, f"import {module} loads numpy"


def test_qparity_help_loads_no_engine_image_or_metric_library():
    code = ("import sys, harness.cli as c\n"
            "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
            f"print('LOADED', ' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert got.stdout.rstrip().endswith("LOADED"), got.stdout[-300:]


def _module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Every harness module -> the harness modules it imports anywhere (lazy imports too)."""
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = package
                for _ in range(max(node.level - 1, 0)):
                    base = base.rpartition(".")[0]
                mod = node.module or ""
                full = (f"{base}.{mod}" if mod else base) if node.level else mod
                # `from . import x` may name a module
                targets = [full, *(f"{full}.{a.name}" for a in node.names)]
            else:
                continue
            deps |= {t for t in targets if t in modules and t != name}
        graph[name] = deps
    return graph


def test_no_library_module_imports_the_cli():
    users = sorted(m for m, deps in import_graph().items()
                   if "harness.cli" in deps and m not in ("harness.cli", "harness.__main__"))
    assert not users, f"these modules import harness.cli: {users}"


def external_imports(module: str) -> set[str]:
    """The top-level names of everything `module` imports anywhere (lazy imports too)."""
    path = PACKAGE.parent / (module.replace(".", "/") + ".py")
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module.split(".")[0])
    return names


# The judging modules: what they decide is read by the command, the page and the tests alike,
# so they neither draw (rich) nor parse a command line (argparse).
JUDGING = ("harness.nightly.judge", "harness.history.store", "harness.history.trend",
           "harness.history.ingest")


@pytest.mark.parametrize("module", JUDGING)
def test_judging_modules_neither_render_nor_parse(module):
    graph = import_graph()
    assert module in graph  # the module exists where the layering says
    found = external_imports(module) & {"rich", "argparse"}
    assert not found, f"{module} imports {sorted(found)}"
    # nor through a harness module that does (the rendering and command modules)
    upward = {d for d in graph[module] if d.rsplit(".", 1)[-1] in ("render", "command", "html", "cli")}
    assert not upward, f"{module} imports {sorted(upward)}"


def test_external_imports_sees_lazy_imports():
    """Control for the test above: the command module's argparse and its lazy rich are found."""
    assert {"argparse", "rich"} <= external_imports("harness.nightly.command")


def test_no_import_cycles():
    """Packages importing their own submodules (a package's __init__) are not cycles."""
    graph = import_graph()
    cycles = []

    def visit(node, stack, on_stack, done):
        on_stack.add(node)
        stack.append(node)
        for dep in sorted(graph[node]):
            if node.startswith(dep + "."):  # a module importing its own package's __init__
                continue
            if dep in on_stack:
                cycles.append(stack[stack.index(dep):] + [dep])
            elif dep not in done:
                visit(dep, stack, on_stack, done)
        stack.pop()
        on_stack.discard(node)
        done.add(node)

    done: set[str] = set()
    for m in sorted(graph):
        if m not in done:
            visit(m, [], set(), done)
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_help_loads_no_numpy_and_repro_lists_its_runners():
    code = ("import sys, harness.cli as c\n"
            "try:\n    c.main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('NUMPY', 'numpy' in sys.modules)")
    got = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert got.stdout.rstrip().endswith("NUMPY False"), got.stdout[-300:]
    from harness.diagnose.defaults import REPRO_ENGINES
    from harness.diagnose.repro_runners import RUNNERS

    assert REPRO_ENGINES == tuple(RUNNERS)
