"""The package's layout promises: the demo's sweep plan, no import cycles, public names only."""

import ast
import pathlib
import re

from configs import demo
from figkd_jax.trainer import run_setup, sweep

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "figkd_jax"


def test_demo_sweep_plan_names_links_and_validates_every_run(tmp_path):
    config = demo.get_config()
    assert sweep.is_sweep(config)
    plan = sweep.plan(config)
    students = [f"{m}_seed{s}" for m in ("ce", "kd", "dkd", "figkd") for s in (0, 1, 2)]
    assert [name for name, _ in plan] == ["teacher", *students]
    runs = dict(plan)
    teacher = runs["teacher"]
    assert (teacher.model, teacher.method.name, teacher.num_epochs) == ("resnet20", "ce", 20)
    assert tuple(teacher.optim.lr_decay_epochs) == (14, 18)
    assert teacher.dataset.train_split == "train"
    assert teacher.teacher.workdir is None and not sweep.is_sweep(teacher)
    for name in students:
        assert runs[name].dataset.train_split == "train[:320]"
        assert runs[name].method.name == name.split("_")[0]
        assert runs[name].seed == int(name[-1])
        expected = None if name.startswith("ce_") else "teacher"
        assert runs[name].teacher.workdir == expected
    for _, config in plan:
        if config.teacher.workdir == "teacher":
            config.teacher.workdir = str(tmp_path / "teacher")
        run = run_setup.build_run(config)
        assert run.info.name == "digits" and run.total_steps > 0


def _imports(path: pathlib.Path) -> set[str]:
    """figkd_jax modules that `path` imports (at any depth, so lazy imports count too)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("figkd_jax"):
            if node.module == "figkd_jax":
                names |= {f"figkd_jax.{a.name}" for a in node.names}
            else:
                names.add(node.module)
        elif isinstance(node, ast.Import):
            names |= {a.name for a in node.names if a.name.startswith("figkd_jax")}
    return names


def _module_name(path: pathlib.Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_no_import_cycle_inside_the_package():
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    graph = {
        name: {m for m in _imports(path) if m in modules and m != name}
        for name, path in modules.items()
    }
    # A package's __init__ re-exporting its submodules is not a cycle of logic.
    for name in graph:
        graph[name] = {m for m in graph[name] if not name.startswith(f"{m}.")}
    visiting, done = [], set()

    def visit(name):
        if name in visiting:
            cycle = [*visiting[visiting.index(name) :], name]
            raise AssertionError(f"import cycle: {' -> '.join(cycle)}")
        if name in done:
            return
        visiting.append(name)
        for dependency in sorted(graph[name]):
            visit(dependency)
        visiting.pop()
        done.add(name)

    for name in sorted(graph):
        visit(name)


# The package's tiers, bottom up: what `pip install figkd_jax` users import (jax and numpy),
# the storage layer and the model zoo, the input code, the trainer, the command-line tools.
TIERS = {
    "figkd_jax": 0,
    "figkd_jax.io": 1,
    "figkd_jax.models": 1,
    "figkd_jax.data": 2,
    "figkd_jax.trainer": 3,
    "figkd_jax.tools": 4,
}


def _tier(module: str) -> str:
    parts = module.split(".")
    subpackage = ".".join(parts[:2])
    return subpackage if subpackage in TIERS else "figkd_jax"


def test_dependencies_point_down_the_tiers():
    modules = {_module_name(p): p for p in PACKAGE.rglob("*.py")}
    assert {_tier(m) for m in modules} == set(TIERS), "a subpackage without a tier"
    upward = []
    for name, path in sorted(modules.items()):
        for imported in sorted(_imports(path)):
            if imported not in modules and imported.rpartition(".")[0] in modules:
                imported = imported.rpartition(".")[0]  # `from package import name`
            here, there = _tier(name), _tier(imported)
            if here != there and TIERS[there] >= TIERS[here]:
                upward.append(f"{name} ({here}) imports {imported} ({there})")
    assert not upward, "\n".join(upward)


def test_tests_and_benchmarks_use_public_names_only():
    module_aliases = r"(?:figkd_jax|train|run_setup|steps|feeds|workdir|report|plots|sweep|data|"
    module_aliases += r"device_input|losses|wavelets|methods|models|checkpoints|events|export|"
    module_aliases += r"convert_torch|diagnostics|pipeline|augment|sources|registry)"
    private = re.compile(rf"\b{module_aliases}\._[a-z]\w*|^from figkd_jax\S* import .*\b_[a-z]")
    offenders = []
    for path in [*(ROOT / "tests").glob("*.py"), *(ROOT / "benchmarks").glob("*.py")]:
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if private.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
