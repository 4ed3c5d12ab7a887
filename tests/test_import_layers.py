"""Imports run one way: the project's import-linter contract keeps the tree as it is, and it fails
on a tree where a lower layer imports a higher one (so the rule can catch a drift back)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
LINT_IMPORTS = shutil.which("lint-imports", path=str(Path(sys.executable).parent))


def lint_imports(tree: Path) -> subprocess.CompletedProcess[str]:
    assert LINT_IMPORTS, "lint-imports is not installed beside this Python (make install)"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [LINT_IMPORTS, "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_the_layers_are_the_ones_the_design_names() -> None:
    (contract,) = CONFIG["contracts"]
    assert contract["layers"] == [
        "mlops",
        "mlops_demo",
        "mlops_control",
        "serving | pipelines",
        "components",
        "mlops_core",
    ]
    layer_packages = [name.strip() for layer in contract["layers"] for name in layer.split("|")]
    assert sorted(CONFIG["root_packages"]) == sorted(layer_packages)


def test_the_project_keeps_its_layers() -> None:
    done = lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr


def import_cycles(packages: list[str]) -> list[list[str]]:
    """Every set of project modules that import each other round a circle (Tarjan's SCCs over
    grimp's module graph, which counts imports inside functions too)."""
    graph = grimp.build_graph(*packages)
    edges = {m: graph.find_modules_directly_imported_by(m) & graph.modules for m in graph.modules}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in edges[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while (w := stack.pop()) != v:
                component.append(w)
            if component:
                cycles.append(sorted([v, *component]))

    for module in sorted(graph.modules):
        if module not in index:
            visit(module)
    return cycles


def test_no_module_imports_itself_round_a_circle() -> None:
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    assert import_cycles(CONFIG["root_packages"]) == []


def test_the_cycle_finder_finds_a_circle(tmp_path: Path, monkeypatch) -> None:
    (tmp_path / "circle_pkg").mkdir()
    (tmp_path / "circle_pkg" / "__init__.py").write_text("")
    (tmp_path / "circle_pkg" / "a.py").write_text("from circle_pkg import b\n")
    (tmp_path / "circle_pkg" / "b.py").write_text("def f():\n    from circle_pkg import a\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    assert import_cycles(["circle_pkg"]) == [["circle_pkg.a", "circle_pkg.b"]]


def test_an_upward_import_breaks_the_contract(tmp_path: Path) -> None:
    for package in CONFIG["root_packages"]:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    # the core reaching up into the CLI: what issue 10 found (mlops_core <- mlops.errors)
    (tmp_path / "mlops" / "cli.py").write_text("import mlops_core.errors\n")
    (tmp_path / "mlops_core" / "errors.py").write_text("from mlops import cli\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    done = lint_imports(tmp_path)
    assert done.returncode != 0
    assert "mlops_core.errors -> mlops.cli" in done.stdout, done.stdout


@pytest.mark.parametrize(
    ("importer", "imported"),
    [
        ("serving", "mlops_control"),  # the model server reaching up into the control plane
        ("serving", "pipelines"),  # siblings: the model server never starts a training run
        ("pipelines", "serving"),
    ],
)
def test_the_control_plane_sits_above_serving_and_pipelines(
    tmp_path: Path, importer: str, imported: str
) -> None:
    for package in CONFIG["root_packages"]:
        (tmp_path / package).mkdir()
        (tmp_path / package / "__init__.py").write_text("")
    (tmp_path / imported / "target.py").write_text("")
    (tmp_path / importer / "source.py").write_text(f"from {imported} import target\n")
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    done = lint_imports(tmp_path)
    assert done.returncode != 0
    assert f"{importer}.source -> {imported}.target" in done.stdout, done.stdout
