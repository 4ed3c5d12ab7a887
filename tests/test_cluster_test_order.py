"""The cluster tests' order in one session (tests/conftest.py): kind's first, KFP's on the same
cluster next, and the tests that redeploy and undeploy last. A lost marker once ran `make undeploy`
before KFP's tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_kind_then_kfp_then_the_teardown_tests() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider",
         "tests/kind/test_cluster.py", "tests/kfp/test_kfp_api.py"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    ids = [line for line in out.splitlines() if "::" in line]
    teardown = [
        "test_make_deploy_twice_succeeds",
        "test_make_undeploy_leaves_nothing_of_the_project",
    ]
    assert [i.rsplit("::", 1)[1] for i in ids[-2:]] == teardown
    kfp = [n for n, i in enumerate(ids) if i.startswith("tests/kfp/")]
    kind = [n for n, i in enumerate(ids[:-2]) if i.startswith("tests/kind/")]
    assert kfp and kind and max(kind) < min(kfp), ids
