"""The house rules of docs/architecture.md, read from the source (AST), so the structure cannot drift unnoticed.

Floors: ``flows/`` → stages ``tasks/<stage>/`` → ground floor ``tasks/*.py`` → ``models/``. A stage never imports
another stage; the ground floor imports no stage and no flow; ``models/`` imports only torch, numpy and the
standard library (it runs on a bare GPU machine); no import cycle, counting imports inside functions; no module over
800 lines and no function over 100; the flow bodies carry no ``:=`` error bookkeeping; nothing picks a matplotlib
backend at import time. Each checker is also run on a small fake tree that breaks its rule, so a checker that can
never fail is caught too.
"""

from __future__ import annotations

import ast
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("flows", "tasks", "models")
MAX_MODULE_LINES = 800
#: Functions aim at ~80 lines (docstring included); past this hard limit one is surely doing several things.
MAX_FUNCTION_LINES = 100
MODELS_MAY_IMPORT = {"torch", "numpy"} | set(sys.stdlib_module_names)


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    is_package: bool


def find_modules(root: Path) -> dict[str, Module]:
    """Every module of the three packages under ``root``, by dotted name."""
    out: dict[str, Module] = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            is_package = parts[-1] == "__init__"
            name = ".".join(parts[:-1] if is_package else parts)
            out[name] = Module(name, path, is_package)
    return out


def _imported_names(module: Module, node: ast.Import | ast.ImportFrom) -> list[str]:
    """Absolute dotted names an import statement refers to (``from a import b`` gives ``a.b``: module ``a.b`` if
    there is one, else the name ``b`` of module ``a``)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = node.module or ""
    if node.level:
        parts = module.name.split(".")
        parts = parts if module.is_package else parts[:-1]
        parts = parts[: len(parts) - (node.level - 1)]
        base = ".".join([*parts, base] if base else parts)
    return [f"{base}.{alias.name}" for alias in node.names]


def import_graph(modules: dict[str, Module]) -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """``(internal, external)``: for each module the project modules it imports (at any depth of the file, so
    function-level imports count) and the top-level names of the outside packages it imports."""
    internal: dict[str, set[str]] = {}
    external: dict[str, set[str]] = {}
    for name, module in modules.items():
        tree = ast.parse(module.path.read_text(encoding="utf-8"))
        inside, outside = set(), set()
        for node in ast.walk(tree):
            if not isinstance(node, ast.Import | ast.ImportFrom):
                continue
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                continue
            for target in _imported_names(module, node):
                found = target
                while found and found not in modules:
                    found = found.rpartition(".")[0]
                if found and found != name:
                    inside.add(found)
                elif not found and target.split(".")[0] not in PACKAGES:
                    outside.add(target.split(".")[0])
        internal[name], external[name] = inside, outside
    return internal, external


def floor(name: str, modules: dict[str, Module]) -> str:
    """``flow``, ``stage:<name>``, ``ground`` or ``models``."""
    parts = name.split(".")
    if parts[0] == "flows":
        return "flow"
    if parts[0] == "models":
        return "models"
    if len(parts) >= 2 and modules.get(f"tasks.{parts[1]}", Module("", Path(), False)).is_package:
        return f"stage:{parts[1]}"
    return "ground"


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), i.e. import cycles."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def floor_violations(modules: dict[str, Module], graph: dict[str, set[str]]) -> list[str]:
    """Imports that go against the floors (see the module docstring)."""
    bad = []
    for src, targets in sorted(graph.items()):
        src_floor = floor(src, modules)
        for dst in sorted(targets):
            dst_floor = floor(dst, modules)
            if src_floor != "flow" and dst_floor == "flow":
                bad.append(f"{src} imports the flow module {dst}")
            elif src_floor == "models" and dst_floor != "models":
                bad.append(f"{src} (models/) imports {dst}")
            elif src_floor == "ground" and dst_floor.startswith("stage:"):
                bad.append(f"{src} (ground floor) imports the stage module {dst}")
            elif src_floor.startswith("stage:") and dst_floor.startswith("stage:") and src_floor != dst_floor:
                bad.append(f"{src} ({src_floor}) imports {dst} of another stage ({dst_floor})")
    return bad


def models_outside_imports(modules: dict[str, Module], external: dict[str, set[str]]) -> list[str]:
    return [
        f"{name} imports {pkg}"
        for name in sorted(modules)
        if floor(name, modules) == "models"
        for pkg in sorted(external[name] - MODELS_MAY_IMPORT)
    ]


def long_modules(modules: dict[str, Module], limit: int = MAX_MODULE_LINES) -> list[str]:
    out = []
    for name, module in sorted(modules.items()):
        n = len(module.path.read_text(encoding="utf-8").splitlines())
        if n > limit:
            out.append(f"{name}: {n} lines")
    return out


def long_functions(modules: dict[str, Module], limit: int = MAX_FUNCTION_LINES) -> list[str]:
    out = []
    for name, module in sorted(modules.items()):
        for node in ast.walk(ast.parse(module.path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.end_lineno - node.lineno + 1 > limit:
                out.append(f"{name}.{node.name}: {node.end_lineno - node.lineno + 1} lines")
    return out


def walrus_in(path: Path) -> list[int]:
    return [n.lineno for n in ast.walk(ast.parse(path.read_text(encoding="utf-8"))) if isinstance(n, ast.NamedExpr)]


def import_time_backend_choices(modules: dict[str, Module]) -> list[str]:
    """Module-level ``matplotlib.use(...)`` calls: they change every importer's backend as a side effect."""
    out = []
    for name, module in sorted(modules.items()):
        for node in ast.parse(module.path.read_text(encoding="utf-8")).body:
            if (
                isinstance(node, ast.Expr)
                and isinstance(node.value, ast.Call)
                and ast.unparse(node.value.func) in ("matplotlib.use", "mpl.use")
            ):
                out.append(f"{name}:{node.lineno}")
    return out


# ------------------------------------------------------------------------------------------------ the real tree

MODULES = find_modules(ROOT)
GRAPH, EXTERNAL = import_graph(MODULES)


def test_the_tree_is_found() -> None:
    assert {"flows.cli", "tasks.cache", "models.registry"} <= set(MODULES)
    assert floor("tasks.cache", MODULES) == "ground"
    assert floor("tasks.ingest.eeg", MODULES) == "stage:ingest"


def test_no_import_cycles_even_through_function_level_imports() -> None:
    assert cycles(GRAPH) == []


def test_stages_are_siblings_on_a_ground_floor_under_the_flows() -> None:
    assert floor_violations(MODULES, GRAPH) == []


def test_models_import_only_torch_numpy_and_the_standard_library() -> None:
    assert models_outside_imports(MODULES, EXTERNAL) == []


def test_no_module_is_over_800_lines() -> None:
    assert long_modules(MODULES) == []


def test_no_function_is_over_100_lines() -> None:
    assert long_functions(MODULES) == []


@pytest.mark.parametrize("flow_file", ["flows/defect_detection.py", "flows/seizure_prediction.py"])
def test_flow_bodies_carry_no_walrus_bookkeeping(flow_file: str) -> None:
    assert walrus_in(ROOT / flow_file) == []


def test_no_matplotlib_backend_is_chosen_at_import_time() -> None:
    assert import_time_backend_choices(MODULES) == []


# ---------------------------------------------------------------------------- the checkers can fail (fake trees)


def _fake_tree(tmp_path: Path, files: dict[str, str]) -> dict[str, Module]:
    for rel, text in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir(exist_ok=True)
        (tmp_path / pkg / "__init__.py").touch()
    return find_modules(tmp_path)


def test_checkers_catch_a_hidden_cycle_and_floor_breaches(tmp_path: Path) -> None:
    modules = _fake_tree(
        tmp_path,
        {
            "tasks/train/__init__.py": "",
            "tasks/train/images.py": "from tasks.augment.images import build\nfrom tasks import rundir\n",
            "tasks/rundir.py": "",
            "tasks/augment/__init__.py": "",
            "tasks/augment/images.py": "def build():\n    from tasks.train.images import x  # hidden\n",
            "tasks/cache.py": "import tasks.train.images\nfrom flows.cli import main\n",
            "models/net.py": "import torch\nimport pandas as pd\nfrom tasks.cache import x\n",
            "flows/cli.py": "from . import lifecycle\n",
            "flows/lifecycle.py": "",
        },
    )
    graph, external = import_graph(modules)
    assert graph["flows.cli"] == {"flows.lifecycle"}  # relative imports resolve
    assert graph["tasks.train.images"] == {"tasks.augment.images", "tasks.rundir"}  # `from pkg import module`
    assert ["tasks.augment.images", "tasks.train.images"] in cycles(graph)
    bad = floor_violations(modules, graph)
    assert "tasks.train.images (stage:train) imports tasks.augment.images of another stage (stage:augment)" in bad
    assert "tasks.cache (ground floor) imports the stage module tasks.train.images" in bad
    assert "tasks.cache imports the flow module flows.cli" in bad
    assert "models.net (models/) imports tasks.cache" in bad
    assert models_outside_imports(modules, external) == ["models.net imports pandas"]


def test_checkers_catch_long_modules_walrus_and_backend_choice(tmp_path: Path) -> None:
    modules = _fake_tree(
        tmp_path,
        {
            "tasks/big.py": "x = 1\n" * 801,
            "tasks/long.py": "def f():\n" + "    x = 1\n" * 100,
            "tasks/plots.py": "import matplotlib\n\nmatplotlib.use('Agg')\n",
            "flows/f.py": "if not (error := 1):\n    pass\n",
        },
    )
    assert long_modules(modules) == ["tasks.big: 801 lines"]
    assert long_functions(modules) == ["tasks.long.f: 101 lines"]
    assert import_time_backend_choices(modules) == ["tasks.plots:3"]
    assert walrus_in(tmp_path / "flows/f.py") == [1]
