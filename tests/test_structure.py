"""The shape of the package: one definition per class, one import direction, torch-free lower layers,
declared stages whose needs are met, and lm-eval tasks and zoo adapters that ship inside the wheel."""

from __future__ import annotations

import ast
import subprocess
import sys
import zipfile
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "benchmark"
ROOT = PACKAGE.parent


def _modules() -> dict[str, ast.Module]:
    """Every module of the package by dotted name, parsed."""
    modules = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        modules[name] = ast.parse(path.read_text(), str(path))
    return modules


def _lazy_exports(tree: ast.Module) -> dict[str, str]:
    """name -> submodule of a package whose `__init__` declares `_EXPORTS` (benchmark.lazy)."""
    for node in tree.body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "") == "_EXPORTS" for t in node.targets):
            exports = ast.literal_eval(node.value)
            return {name: module for module, names in exports.items() for name in names}
    return {}


def _is_type_checking(node: ast.If) -> bool:
    return isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING"


def _imports(tree: ast.Module) -> list[ast.ImportFrom | ast.Import]:
    """Every import statement, at any depth, except those only for type checkers."""
    found, stack = [], list(tree.body)
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            found.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return found


def _graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports (a lazy package's names resolve to their submodule)."""
    modules = _modules()
    lazy = {name: _lazy_exports(tree) for name, tree in modules.items()}
    graph: dict[str, set[str]] = defaultdict(set)
    for name, tree in modules.items():
        for node in _imports(tree):
            if isinstance(node, ast.Import):
                graph[name] |= {alias.name for alias in node.names if alias.name in modules}
                continue
            if not node.module or node.module not in modules:
                continue
            for alias in node.names:
                submodule = f"{node.module}.{alias.name}"
                if submodule in modules:
                    graph[name].add(submodule)
                elif alias.name in lazy[node.module]:
                    graph[name].add(f"{node.module}.{lazy[node.module][alias.name]}")
                else:
                    graph[name].add(node.module)
    return graph


def test_no_class_is_defined_twice_in_the_package():
    where = defaultdict(list)
    for name, tree in _modules().items():
        for node in ast.walk(tree):
            if isinstance(node, ast.ClassDef):
                where[node.name].append(name)
    twice = {cls: modules for cls, modules in where.items() if len(modules) > 1}
    assert twice == {}


def test_the_package_has_no_import_cycle():
    graph, state, cycles = _graph(), {}, []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for target in sorted(graph.get(module, ())):
            if state.get(target) == "open":
                cycles.append(path[path.index(target) :] + [target])
            elif target not in state:
                visit(target, [*path, target])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert cycles == []


def test_imports_flow_one_way():
    """Methods never import the pipeline, the pipeline never imports the leaderboard or the CLI."""
    graph = _graph()
    rules = {
        "benchmark.pipeline": ("benchmark.leaderboard", "benchmark.cli", "benchmark.cli_score"),
        "benchmark.records": ("benchmark.pipeline", "benchmark.submission", "benchmark.leaderboard"),
        "benchmark.settings": ("benchmark.pipeline", "benchmark.submission"),
    }
    for layer, forbidden in rules.items():
        for module, targets in graph.items():
            if module == layer or module.startswith(layer + "."):
                bad = sorted(t for t in targets if t.startswith(forbidden))
                assert bad == [], f"{module} imports {bad}"


def test_configs_records_and_validation_import_without_torch():
    code = (
        "import sys, benchmark.settings, benchmark.records, benchmark.submission, benchmark.circuit; "
        "print('torch' in sys.modules)"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert output.stdout.strip() == "False"


def test_every_stage_need_is_met_by_an_earlier_stage():
    from benchmark.pipeline.runner import schedule
    from benchmark.pipeline.stages import SPLITS, STAGES

    order = schedule(STAGES)
    assert [stage.id(side) for stage, side in order][:2] == ["base.record", "base.behaviour"]
    roles = {role.role for role in SPLITS}
    assert all(set(stage.splits) <= roles for stage in STAGES)


def test_task_names_come_from_the_yaml():
    from benchmark.tasks import TASKS_DIR, task_names

    assert task_names() == {3: "entity_tracking_3", 5: "entity_tracking_5", 7: "entity_tracking"}
    assert TASKS_DIR.is_relative_to(PACKAGE)


@pytest.mark.slow
def test_the_wheel_ships_the_tasks_the_adapters_and_the_schema(tmp_path):
    command = ["pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w", str(tmp_path), str(ROOT)]
    subprocess.run([sys.executable, "-m", *command], check=True, capture_output=True)
    (wheel,) = tmp_path.glob("*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {
        "benchmark/tasks/entity_tracking/entity_tracking.yaml",
        "benchmark/tasks/entity_tracking/_template_yaml",
        "benchmark/tasks/entity_tracking/utils.py",
        "benchmark/zoo/adapters/organism-base/adapter_model.safetensors",
        "benchmark/zoo/adapters/organism-finetuned/adapter_config.json",
        "benchmark/submission/schema-v1.json",
        "benchmark/submission/schema-v2.json",
        "benchmark/submission/schema-v3.json",
        "benchmark/submission/schema-v4.json",
    }
    assert expected <= names, sorted(expected - names)
