"""`mlops registry` as a user runs it: rollback walks backwards, and a corrupt registry file is one
line naming the file, never a traceback."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.drift import profile_reference
from mlops_core.registry import ModelRegistry

pytestmark = pytest.mark.slow  # one `mlops` process per command


def mlops(*args: str, registry: Path) -> subprocess.CompletedProcess[str]:
    exe = Path(sys.executable).with_name("mlops")
    return subprocess.run(
        [str(exe), "registry", *args, "--registry", str(registry), "--model", "churn"],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def registry(tmp_path: Path) -> Path:
    """Three versions (the artifact bytes do not matter to these commands), v1 -> v2 -> v3."""
    reg = ModelRegistry(str(tmp_path / "reg"))
    artifact = tmp_path / "model.skops"
    artifact.write_bytes(b"not loaded by these commands")
    reference = profile_reference(generate_churn(200, seed=1), CHURN_SCHEMA)
    for v in (1, 2, 3):
        reg.register("churn", str(artifact), schema=CHURN_SCHEMA, reference=reference)
        reg.set_champion("churn", v, reason=f"v{v}")
    return tmp_path / "reg"


def test_rollback_twice_walks_back_and_promote_of_the_champion_is_refused(registry: Path) -> None:
    assert "v2 is champion" in mlops("rollback", registry=registry).stdout
    assert "v1 is champion" in mlops("rollback", registry=registry).stdout  # was: back to v3
    again = mlops("promote", "1", registry=registry)
    assert again.returncode == 2 and "already the champion" in again.stderr
    assert ModelRegistry(str(registry)).champion("churn") == 1


@pytest.mark.parametrize(
    ("file", "content", "commands"),
    [
        (
            "versions/3/version.json",
            '{"model": "churn", "version": 3}{"x": 1}',  # the probe's "Extra data"
            [("show",), ("show", "3")],
        ),
        ("champion/00000003.json", "{truncated", [("show",), ("list",), ("promote", "2")]),
    ],
)
def test_a_corrupt_registry_file_is_one_line_naming_it(
    registry: Path, file: str, content: str, commands: list[tuple[str, ...]]
) -> None:
    (registry / "churn" / file).write_text(content)
    for args in commands:
        out = mlops(*args, registry=registry)
        assert out.returncode == 2, (args, out.stdout, out.stderr)
        assert "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert f"churn/{file} is corrupt" in out.stderr, out.stderr


def test_list_shows_a_version_with_a_corrupt_record_as_unreadable(registry: Path) -> None:
    """The probe: one corrupt version.json broke `registry list` for the whole model."""
    (registry / "churn" / "versions" / "2" / "version.json").write_text("{truncated")
    out = mlops("list", registry=registry)
    assert out.returncode == 0, out.stderr
    assert "unreadable" in out.stdout and "churn/versions/2/version.json is corrupt" in out.stdout
    rows = [line for line in out.stdout.splitlines() if line.startswith("│")]
    assert [row.split("│")[1].strip() for row in rows] == ["1", "2", "3"]
    assert "*" in rows[2]  # v3 is still shown as the champion


def test_a_registry_path_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "reg").write_text("not a folder")
    exe = Path(sys.executable).with_name("mlops")
    for args in (["registry", "show"], ["registry", "list"], ["serve", "--port", "1"]):
        out = subprocess.run(
            [str(exe), *args, "--registry", str(tmp_path / "reg"), "--model", "churn"],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert out.returncode == 2, (args, out.stderr)
        assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1
        assert "is a file, not a registry folder" in out.stderr, out.stderr


def test_serving_a_schema_with_no_features_is_one_line(registry: Path) -> None:
    schema = registry / "churn" / "versions" / "3" / "schema.json"
    doc = json.loads(schema.read_text())
    schema.write_text(json.dumps(doc | {"features": []}))
    exe = Path(sys.executable).with_name("mlops")
    out = subprocess.run(
        [str(exe), "serve", "--registry", str(registry), "--model", "churn", "--port", "1"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr
    assert "schema lists no features" in out.stderr and "versions/3/schema.json" in out.stderr


def test_an_error_line_is_bounded(registry: Path) -> None:
    """The probe saw a 23.6 kB error line; a message quoting a huge input is cut, saying so."""
    out = mlops("show", "x" * 30_000, registry=registry)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1
    assert len(out.stderr) < 2_200 and "more characters)" in out.stderr, len(out.stderr)


def test_list_without_a_model_shows_every_model_with_its_tasks_metric(tmp_path: Path) -> None:
    # Issue 24, item 7: without --model the list showed an empty churn table; regression and
    # multiclass models showed `roc_auc nan`.
    reg = ModelRegistry(str(tmp_path / "reg"))
    artifact = tmp_path / "model.skops"
    artifact.write_bytes(b"not loaded by this command")
    reference = profile_reference(generate_churn(200, seed=1), CHURN_SCHEMA)
    for name, task, metrics in (
        ("cancer", "binary", {"roc_auc": 0.9871}),
        ("iris", "multiclass", {"macro_f1": 0.9333, "accuracy": 0.9333}),
        ("petals", "regression", {"rmse": 0.1875, "mae": 0.14}),
    ):
        reg.register(
            name,
            str(artifact),
            schema=CHURN_SCHEMA,
            reference=reference,
            metrics=metrics,
            params={"task": task},
        )
        reg.set_champion(name, 1, reason="first")
    exe = Path(sys.executable).with_name("mlops")
    env = {k: v for k, v in os.environ.items() if k != "MLOPS_MODEL_NAME"} | {"COLUMNS": "200"}
    r = subprocess.run(
        [str(exe), "registry", "list", "--registry", str(tmp_path / "reg")],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    for title in ("cancer @", "iris @", "petals @"):
        assert title in r.stdout
    assert "roc_auc 0.9871" in r.stdout and "macro_f1 0.9333" in r.stdout
    assert "rmse 0.1875" in r.stdout and "nan" not in r.stdout
    assert "churn @" not in r.stdout  # no model of that name: no empty table for it
