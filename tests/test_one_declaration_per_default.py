"""Each default is declared once (mlops_core/settings.py) and imported where it is used: this
test fails when one of them is written again as a literal in a default position (a parameter's
default, a dataclass field, a CLI option's or a pipeline parameter's default, a keyword argument,
an environment fallback) anywhere in the project's packages."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

from mlops_core import settings

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = (
    "mlops",
    "mlops_demo",
    "mlops_control",
    "serving",
    "pipelines",
    "components",
    "mlops_core",
)
DECLARED_IN = ROOT / "mlops_core" / "settings.py"

# The default, and the names a default position holding it goes by.
KNOWN: dict[str, tuple[object, set[str]]] = {
    "DEFAULT_DECISION_THRESHOLD": (
        settings.DEFAULT_DECISION_THRESHOLD,
        {"threshold", "decision_threshold"},
    ),
    "DEFAULT_MAX_BATCH_ROWS": (settings.DEFAULT_MAX_BATCH_ROWS, {"max_rows", "max_batch_rows"}),
    "DEFAULT_MAX_BODY_BYTES": (settings.DEFAULT_MAX_BODY_BYTES, {"max_body_bytes"}),
    "DEFAULT_CONFIRM_TIMEOUT_S": (
        settings.DEFAULT_CONFIRM_TIMEOUT_S,
        {"confirm_timeout", "confirm_timeout_s"},
    ),
    "DEFAULT_CONTROLLER_RESYNC_S": (settings.DEFAULT_CONTROLLER_RESYNC_S, {"resync", "resync_s"}),
    "DEFAULT_DRIFT_PSI": (settings.DEFAULT_DRIFT_PSI, {"psi", "drift_psi"}),
    "DEFAULT_DRIFT_ALPHA": (settings.DEFAULT_DRIFT_ALPHA, {"alpha", "drift_alpha"}),
    "DEFAULT_DRIFT_KS_STATISTIC": (
        settings.DEFAULT_DRIFT_KS_STATISTIC,
        {"ks_statistic", "drift_ks_statistic"},
    ),
    "DEFAULT_DRIFT_CRAMERS_V": (settings.DEFAULT_DRIFT_CRAMERS_V, {"cramers_v", "drift_cramers_v"}),
    "DEFAULT_TRIGGER_SHARE_DRIFTED": (
        settings.DEFAULT_TRIGGER_SHARE_DRIFTED,
        {"share_drifted", "trigger_share_drifted"},
    ),
    "DEFAULT_TRIGGER_SUSTAIN_S": (
        settings.DEFAULT_TRIGGER_SUSTAIN_S,
        {"sustain_s", "trigger_sustain_s"},
    ),
    "DEFAULT_TRIGGER_MIN_EVALUATIONS": (
        settings.DEFAULT_TRIGGER_MIN_EVALUATIONS,
        {"min_evaluations", "trigger_min_evaluations"},
    ),
    "DEFAULT_TRIGGER_COOLDOWN_S": (
        settings.DEFAULT_TRIGGER_COOLDOWN_S,
        {"cooldown_s", "trigger_cooldown_s"},
    ),
    "DEFAULT_CANARY_STEPS": (settings.DEFAULT_CANARY_STEPS, {"steps"}),
    "DEFAULT_FIRST_CANARY_PERCENT": (
        settings.DEFAULT_FIRST_CANARY_PERCENT,
        {"canary_percent", "first_step"},
    ),
    "DEFAULT_FEATURE_TABLE_ROWS": (settings.DEFAULT_FEATURE_TABLE_ROWS, {"rows", "table_rows"}),
    "DEFAULT_FEATURE_SERVER_PORT": (settings.DEFAULT_FEATURE_SERVER_PORT, {"port"}),
}
# Literals that are a default wherever they appear in code.
ANYWHERE = {
    settings.DEFAULT_CLUSTER_REGISTRY_URI: "DEFAULT_CLUSTER_REGISTRY_URI",
    # A path relative to the working directory; the installed file is pipelines.training.GOLDEN_YAML.
    "pipelines/training.yaml": "pipelines.training.GOLDEN_YAML",
}


def _literal(node: ast.AST | None) -> object:
    """The literal a default position holds: a constant, a tuple of them, a string fallback of
    `_env(name, "...")`, or the first argument of an Option(...)/_param(...) call."""
    if node is None:
        return None
    if isinstance(node, ast.Call) and node.args:
        return _literal(node.args[0]) if not isinstance(node.args[0], ast.Call) else None
    try:
        return ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError):
        return None


def _default_positions(tree: ast.AST) -> Iterator[tuple[str, ast.AST, int]]:
    """(name, value node, line) of every default position."""
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            a = node.args
            positional = a.posonlyargs + a.args
            for arg, default in zip(
                positional[len(positional) - len(a.defaults) :], a.defaults, strict=True
            ):
                yield arg.arg, default, default.lineno
            for arg, kw_default in zip(a.kwonlyargs, a.kw_defaults, strict=True):
                if kw_default is not None:
                    yield arg.arg, kw_default, kw_default.lineno
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value:
            yield node.target.id, node.value, node.lineno
        elif isinstance(node, ast.Call):
            for kw in node.keywords:
                if kw.arg is not None:
                    yield kw.arg, kw.value, kw.value.lineno
            # _env("drift_psi", "0.2"): the environment's fallback
            if isinstance(node.func, ast.Name) and node.func.id == "_env" and len(node.args) == 2:
                name, fallback = node.args
                if isinstance(name, ast.Constant) and isinstance(fallback, ast.Constant):
                    yield str(name.value), fallback, fallback.lineno


def _equal(found: object, default: object) -> bool:
    if isinstance(found, str) and not isinstance(default, str):
        try:
            return float(found) == default
        except ValueError:
            return False
    if isinstance(found, list):
        found = tuple(found)
    return type(found) is not bool and found == default


def _sources() -> Iterator[Path]:
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path != DECLARED_IN:
                yield path


def test_no_default_is_declared_twice() -> None:
    found = []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        where = path.relative_to(ROOT)
        for name, node, line in _default_positions(tree):
            value = _literal(node)
            for const, (default, names) in KNOWN.items():
                if name in names and _equal(value, default):
                    found.append(f"{where}:{line}: {name} = {value!r}; import {const}")
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in ANYWHERE:
                found.append(f"{where}:{node.lineno}: {node.value!r}; use {ANYWHERE[node.value]}")
    assert found == [], "defaults written again:\n" + "\n".join(found)


def test_the_check_sees_a_literal_default(tmp_path: Path) -> None:
    """The check itself: a literal default in each kind of position is found."""
    code = (
        "def f(threshold=0.5, *, confirm_timeout_s=120.0): ...\n"
        "class P:\n    max_rows: int = 1000\n"
        "x = Option(5.0, '--resync')\n"
        "def g(resync: float = Option(5.0)): ...\n"
        "y = _env('drift_psi', '0.2')\n"
        "z = TriggerPolicy(cooldown_s=3600.0)\n"
    )
    positions = [(n, _literal(v)) for n, v, _ in _default_positions(ast.parse(code))]
    hits = {
        n
        for n, v in positions
        for _, (default, names) in KNOWN.items()
        if n in names and _equal(v, default)
    }
    assert hits == {
        "threshold",
        "confirm_timeout_s",
        "max_rows",
        "resync",
        "drift_psi",
        "cooldown_s",
    }


def test_the_control_plane_names_no_metric_but_through_serving_metric_names() -> None:
    """Metric names are declared once (serving/metric_names.py), for the server that exports
    them and the control plane that queries them."""
    found = []
    for path in sorted((ROOT / "mlops_control").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Constant)
                and isinstance(node.value, str)
                and re.fullmatch(r"mlops_[a-z_]+", node.value)
            ):
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert found == []
