"""`mlops features` as a user runs it: the real CLI process on a real Feast repository, and the
real feature server it starts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest

from components.feature_store import FeatureStoreConfig, online_features
from mlops_core.churn_data import CHURN_SCHEMA
from mlops_core.churn_feature_tables import ENTITY_KEY, EVENT_TIMESTAMP, generate_churn_tables
from mlops_demo.feature_serving import feature_server

pytest.importorskip("feast", reason="the feature store needs the features extra (feast)")
pytestmark = pytest.mark.slow  # real CLI processes

MLOPS = str(Path(sys.executable).with_name("mlops"))


def mlops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MLOPS, *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", "HOME": str(cwd)},
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A repository made by `init` and `apply`, materialized up to 2026-05-01 by `materialize`."""
    cwd = tmp_path_factory.mktemp("cli")
    args = ("--rows", "30", "--seed", "3", "--start", "2026-01-01", "--repo", "repo")
    r = mlops("features", "init", *args, cwd=cwd)
    assert r.returncode == 0, r.stderr
    assert "wrote 30 customers' tables to repo/data" in r.stdout
    r = mlops("features", "apply", "--repo", "repo", cwd=cwd)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == (
        "applied views customer_profile, customer_activity and service churn in repo"
    )
    r = mlops("features", "materialize", "--repo", "repo", "--end", "2026-05-01", cwd=cwd)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.strip().splitlines()
    assert lines[0].startswith("customer_profile: 2025-12-31T")
    assert lines[0].endswith(" .. 2026-05-01T00:00:00+00:00, 30 rows, 30 customers")
    assert lines[1].endswith(" .. 2026-05-01T00:00:00+00:00, 90 rows, 30 customers")
    return cwd / "repo"


def test_init_writes_the_generated_tables_and_materialize_is_incremental(repo: Path) -> None:
    tables = generate_churn_tables(30, seed=3)
    written = pd.read_parquet(repo / "data" / "customer_activity.parquet")
    pd.testing.assert_frame_equal(written, tables.customer_activity, check_dtype=False)
    assert (repo / "feature_store.yaml").exists()
    r = mlops("features", "materialize", "--repo", "repo", "--end", "2026-05-01", cwd=repo.parent)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines() == [
        "customer_profile: up to date",
        "customer_activity: up to date",
    ]


def test_get_prints_the_online_values(repo: Path) -> None:
    r = mlops("features", "get", "100003", "100004", "7", "--repo", "repo", cwd=repo.parent)
    assert r.returncode == 0, r.stderr
    online = online_features(FeatureStoreConfig(repo_path=str(repo)), [100_003, 100_004])
    rows = {line.split("│")[1].strip(): line for line in r.stdout.splitlines() if "│" in line}
    for feature in ("contract", "logins_30d", "monthly_charges"):
        cells = [c.strip() for c in rows[feature].split("│")[2:5]]
        assert cells == [*[str(v) for v in online[feature]], ""], feature
    assert "no online values for [7]: not materialized yet?" in r.stdout


def test_mistakes_are_one_line_before_any_work(tmp_path: Path) -> None:
    cases = {
        ("features", "get", "abc", "--repo", "r"): "error: customer ids are whole numbers, got "
        "['abc']",
        ("features", "materialize", "--repo", "r"): "error: no feature registry in r: run "
        "`mlops features init` and `mlops features apply` first",
        ("features", "materialize", "--repo", "r", "--end", "soon"): "error: end must be an ISO "
        "8601 time such as 2026-05-01T00:00:00+00:00, got 'soon'",
        ("features", "init", "--rows", "0", "--repo", "r"): "error: --rows must be 1 or more, "
        "got 0",
        ("features", "serve", "--repo", "r", "--port", "0"): "error: --port must be 1..65535, "
        "got 0",
        ("features", "init", "--start", "May", "--repo", "r"): "error: --start must be an ISO "
        "8601 day or time, got 'May'",
        ("features", "snapshot", "--at", "soon", "--repo", "r"): "error: --at must be an ISO "
        "8601 day or time, got 'soon'",
        ("features", "snapshot", "--repo", "r"): "error: no activity table at "
        "r/data/customer_activity.parquet: run `mlops features init`",
        # The cluster's commands: refused before KFP is called (nothing listens at port 9).
        ("features", "submit", "--repo", "r", "--host", "http://127.0.0.1:9"): "error: --repo "
        "'r' is a path on this machine, which the cluster cannot read; a cluster run "
        "materializes a repository in the object store (s3://...)",
        ("features", "submit", "--end", "soon", "--host", "http://127.0.0.1:9"): "error: end "
        "must be an ISO 8601 time such as 2026-05-01T00:00:00+00:00, got 'soon'",
        ("features", "schedule", "--cron", "0 * * * *", "--host", "http://127.0.0.1:9"): "error: "
        "KFP cron expressions have 6 fields (seconds first), e.g. '0 0 3 * * *'; got '0 * * * *'",
    }
    for args, message in cases.items():
        r = mlops(*args, cwd=tmp_path)
        assert (r.returncode, r.stderr.strip()) == (2, message), args
    assert not (tmp_path / "r").exists()  # nothing was written
    r = mlops("features", "apply", "--repo", "r", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: feature tables ")
    assert len(r.stderr.strip().splitlines()) == 1


def test_serve_runs_the_feature_server_with_the_online_values(repo: Path) -> None:
    # the demo's runner: `mlops features serve --repo REPO --port PORT`, logging to the folder
    with feature_server(FeatureStoreConfig(repo_path=str(repo)), repo.parent) as url:
        log = repo.parent / "feature-server.log"
        port = url.rsplit(":", 1)[1]
        body = {"features": ["customer_activity:logins_30d"], "entities": {ENTITY_KEY: [100_005]}}
        r = httpx.post(f"{url}/get-online-features", json=body, timeout=30)
        assert r.status_code == 200, r.text
        got = r.json()["results"][1]["values"][0]
        activity = generate_churn_tables(30, seed=3).customer_activity
        latest = activity[activity[ENTITY_KEY] == 100_005].sort_values(EVENT_TIMESTAMP)
        assert got == float(latest["logins_30d"].iloc[-1])
        assert f"set MLOPS_FEATURE_SERVER_URL={url}" in log.read_text()
        # A second server on the same port is refused in one line.
        r2 = mlops("features", "serve", "--repo", "repo", "--port", str(port), cwd=repo.parent)
        assert r2.returncode == 2
        assert r2.stderr.startswith(f"error: cannot serve on 127.0.0.1:{port}: ")


def test_a_snapshot_is_new_data_that_materialize_brings_online(repo: Path) -> None:
    """Last in this module: it changes the repository the tests above read."""
    before = pd.read_parquet(repo / "data" / "customer_activity.parquet")
    r = mlops("features", "snapshot", "--repo", "repo", "--at", "2026-06-01", cwd=repo.parent)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("added 30 customers' activity at 2026-06-01T00:00:00+00:00 to ")
    after = pd.read_parquet(repo / "data" / "customer_activity.parquet")
    pd.testing.assert_frame_equal(after.iloc[: len(before)], before)  # nothing rewritten
    new = after.iloc[len(before) :].set_index(ENTITY_KEY)
    assert sorted(new.index) == sorted(before[ENTITY_KEY].unique())
    assert (new[EVENT_TIMESTAMP] == pd.Timestamp("2026-06-01", tz="UTC")).all()
    # Validation's ranges hold for the new values: a retrained model's data passes it.
    for feature in CHURN_SCHEMA.features:
        if feature.name in new.columns:
            values = pd.to_numeric(new[feature.name]).dropna()
            assert values.between(feature.min, feature.max).all(), feature.name
    r = mlops("features", "materialize", "--repo", "repo", "--end", "2026-06-02", cwd=repo.parent)
    assert r.returncode == 0, r.stderr
    assert r.stdout.splitlines()[1] == (
        "customer_activity: 2026-05-01T00:00:00+00:00 .. 2026-06-02T00:00:00+00:00, 30 rows, "
        "30 customers"
    )
    online = online_features(FeatureStoreConfig(repo_path=str(repo)), [100_003]).iloc[0]
    for feature in ("tenure_months", "logins_30d", "total_charges"):
        assert online[feature] == new.loc[100_003, feature], feature
    # A snapshot must be later than the latest one: one line, nothing written.
    r = mlops("features", "snapshot", "--repo", "repo", "--at", "2026-05-15", cwd=repo.parent)
    assert r.returncode == 2
    assert r.stderr.strip() == (
        "error: a new snapshot must come after the latest one (2026-06-01T00:00:00+00:00), got "
        "2026-05-15T00:00:00+00:00"
    )
    assert len(pd.read_parquet(repo / "data" / "customer_activity.parquet")) == len(after)
