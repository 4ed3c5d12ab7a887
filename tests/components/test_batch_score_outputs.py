"""Batch outputs appear whole or not at all (issue 25): a failed, refused or killed run leaves the
previous scores as they were; coinciding paths are refused before any work; a run that scores
nothing fails; unreadable inputs and unwritable outputs are one line, never a traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from components.batch_score import BatchScoreParams, NothingScoredError, score_batch
from components.train import TrainParams, save_model, train_model
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.drift import profile_reference
from mlops_core.errors import InvalidInputError, MlopsError
from mlops_core.registry import ModelRegistry

MODEL = "churn"
MLOPS = str(Path(sys.executable).with_name("mlops"))


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> str:
    root = tmp_path_factory.mktemp("batch-out")
    train = generate_churn(1500, seed=11)
    pipeline = train_model(train, CHURN_SCHEMA, TrainParams("logistic_regression")).pipeline
    save_model(pipeline, str(root / "m.skops"))
    reg = ModelRegistry(str(root / "registry"))
    mv = reg.register(
        MODEL,
        str(root / "m.skops"),
        schema=CHURN_SCHEMA,
        reference=profile_reference(train, CHURN_SCHEMA),
    )
    reg.set_champion(MODEL, mv.version, reason="batch output tests")
    return str(root / "registry")


def _data(rows: int, seed: int = 7) -> pd.DataFrame:
    df = generate_churn(rows, seed=seed).reset_index(drop=True)
    df.insert(0, "customer_id", [f"c{i:06d}" for i in range(rows)])
    return df


def _params(registry: str, src: Path, out: Path, **kw: object) -> BatchScoreParams:
    return BatchScoreParams(
        registry_uri=registry, model_name=MODEL, input_uri=str(src), output_uri=str(out), **kw
    )


@pytest.fixture
def good_output(registry: str, tmp_path: Path) -> tuple[Path, bytes, bytes]:
    """A finished run's scores and rejected rows (their bytes): what a failed run must keep."""
    _data(2000).to_parquet(tmp_path / "good.parquet")
    out = tmp_path / "scores.parquet"
    score_batch(_params(registry, tmp_path / "good.parquet", out))
    rejected = tmp_path / "scores.rejected.parquet"
    return out, out.read_bytes(), rejected.read_bytes()


def _untouched(good_output: tuple[Path, bytes, bytes]) -> None:
    out, scores, rejected = good_output
    assert out.read_bytes() == scores
    assert out.with_name("scores.rejected.parquet").read_bytes() == rejected
    assert pq.read_metadata(out).num_rows == 2000
    assert [p.name for p in out.parent.iterdir() if p.name.endswith(".partial")] == []


def test_a_run_that_fails_midway_leaves_the_previous_output(
    registry: str, tmp_path: Path, good_output: tuple[Path, bytes, bytes]
) -> None:
    out = good_output[0]
    # A bad CSV line far into the file: the probe left 27,670 of 50,000 rows, read as complete.
    csv = tmp_path / "bad-line.csv"
    _data(20_000).to_csv(csv, index=False)
    lines = csv.read_text().splitlines()
    lines[15_000] += ',"an extra field"'
    csv.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInputError, match=r"cannot read .*bad-line\.csv"):
        score_batch(_params(registry, csv, out, chunk_rows=1000))
    _untouched(good_output)
    # Missing columns: the probe's run exited 2 and replaced the good output with 0 rows.
    _data(500).drop(columns=[CHURN_SCHEMA.features[0].name]).to_parquet(tmp_path / "short.parquet")
    with pytest.raises(MlopsError, match="lacks feature column"):
        score_batch(_params(registry, tmp_path / "short.parquet", out))
    _untouched(good_output)


def test_kill_9_mid_run_leaves_the_previous_output(
    registry: str, tmp_path: Path, good_output: tuple[Path, bytes, bytes]
) -> None:
    out = good_output[0]
    _data(200_000, seed=3).to_parquet(tmp_path / "big.parquet", row_group_size=1000)
    run = subprocess.Popen(
        [
            *(MLOPS, "batch", "score", "--registry", registry, "--model", MODEL),
            *("--input", str(tmp_path / "big.parquet"), "--output", str(out)),
            *("--chunk-rows", "500", "--threads", "1"),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    partial: list[Path] = []
    while not partial and run.poll() is None and time.monotonic() < deadline:
        partial = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
        time.sleep(0.01)
    assert partial, "the run finished or stalled before writing anything: nothing was killed"
    os.kill(run.pid, signal.SIGKILL)
    run.wait(timeout=30)
    assert out.read_bytes() == good_output[1]
    assert pq.read_metadata(out).num_rows == 2000  # readable, and the previous run's rows


@pytest.mark.parametrize("which", ["rejected=output", "rejected=input", "output=input (link)"])
def test_coinciding_paths_are_refused_before_any_work(
    tmp_path: Path, good_output: tuple[Path, bytes, bytes], which: str
) -> None:
    out = good_output[0]
    src = tmp_path / "in.parquet"
    _data(100).to_parquet(src)
    before = src.read_bytes()
    kw: dict[str, object] = {}
    target = out
    if which == "rejected=output":
        kw["rejected_uri"] = str(out)
    elif which == "rejected=input":
        kw["rejected_uri"] = str(src)
    else:
        (tmp_path / "link.parquet").symlink_to(src)
        target = tmp_path / "link.parquet"
    # A registry that does not exist: the refusal comes before the model is even looked up.
    with pytest.raises(InvalidInputError, match="name the same file"):
        score_batch(_params(str(tmp_path / "no-registry"), src, target, **kw))
    assert src.read_bytes() == before
    _untouched(good_output)


def _cli(registry: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MLOPS, "batch", "score", "--registry", registry, "--model", MODEL, *args],
        capture_output=True,
        text=True,
        timeout=300,
    )


def _one_line(done: subprocess.CompletedProcess[str], *needles: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    for needle in needles:
        assert needle in done.stderr, done.stderr


def test_a_run_that_scores_nothing_fails_with_one_line(
    registry: str, tmp_path: Path, good_output: tuple[Path, bytes, bytes]
) -> None:
    out = good_output[0]
    df = _data(300)
    df[CHURN_SCHEMA.categorical_features[0].name] = "martian"  # every row rejected
    df.to_parquet(tmp_path / "all-bad.parquet")
    with pytest.raises(NothingScoredError):
        score_batch(_params(registry, tmp_path / "all-bad.parquet", out))
    assert out.read_bytes() == good_output[1]
    assert pq.read_metadata(out.with_name("scores.rejected.parquet")).num_rows == 300
    done = _cli(registry, "--input", str(tmp_path / "all-bad.parquet"), "--output", str(out))
    _one_line(done, "no row was scored", "all 300 rows", "unknown category")
    _data(5).iloc[:0].to_csv(tmp_path / "header-only.csv", index=False)
    done = _cli(registry, "--input", str(tmp_path / "header-only.csv"), "--output", str(out))
    _one_line(done, "holds no rows")
    assert out.read_bytes() == good_output[1]


def test_unreadable_inputs_and_bad_options_are_one_line(registry: str, tmp_path: Path) -> None:
    out = str(tmp_path / "o.parquet")
    (tmp_path / "empty.csv").write_bytes(b"")
    _one_line(_cli(registry, "--input", str(tmp_path / "empty.csv"), "--output", out), "empty.csv")
    # A corrupt data page: the footer reads, the page does not decode.
    good = tmp_path / "page.parquet"
    _data(5000).to_parquet(good, compression="snappy")
    raw = bytearray(good.read_bytes())
    for i in range(200, 4000, 7):
        raw[i] ^= 0xFF
    good.write_bytes(bytes(raw))
    _one_line(_cli(registry, "--input", str(good), "--output", out), "page.parquet")
    _data(50).to_parquet(tmp_path / "in.parquet")
    src = str(tmp_path / "in.parquet")
    _one_line(
        _cli(registry, "--input", src, "--output", str(tmp_path / "no" / "dir" / "o.parquet")),
        "does not exist",
    )
    _one_line(_cli(registry, "--input", src, "--output", out, "--threads", "-1"), "threads")


def test_an_output_folder_without_write_permission_is_one_line(
    registry: str, tmp_path: Path
) -> None:
    _data(50).to_parquet(tmp_path / "in.parquet")
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    if os.access(locked, os.W_OK):
        pytest.skip("running as root: a read-only folder is still writable")
    src = str(tmp_path / "in.parquet")
    _one_line(_cli(registry, "--input", src, "--output", str(locked / "o.parquet")), "permission")
