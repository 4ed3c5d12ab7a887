"""`mlops registry` as a user runs it: rollback walks backwards, and a corrupt registry file is one
line naming the file, never a traceback."""

from __future__ import annotations

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
            [("show",), ("list",), ("show", "3")],
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
