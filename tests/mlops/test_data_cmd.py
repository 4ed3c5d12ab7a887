"""`mlops data sample` as a user runs it: the real CLI process writing real files."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from mlops_core.cars_data import generate_cars

pytestmark = pytest.mark.slow  # real CLI processes

MLOPS = str(Path(sys.executable).with_name("mlops"))


def mlops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [MLOPS, *args], cwd=cwd, capture_output=True, text=True, timeout=300, check=False
    )


def test_sample_writes_the_generated_table(tmp_path: Path) -> None:
    r = mlops("data", "sample", "cars", "-o", "cars.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "wrote 398 rows of cars to cars.csv (target column: mpg)"
    written = pd.read_csv(tmp_path / "cars.csv")
    pd.testing.assert_frame_equal(written, generate_cars(), check_dtype=False)
    r = mlops("data", "sample", "churn", "--rows", "50", "-o", "churn.csv", cwd=tmp_path)
    assert r.returncode == 0 and len(pd.read_csv(tmp_path / "churn.csv")) == 50


def test_sample_mistakes_are_one_line(tmp_path: Path) -> None:
    r = mlops("data", "sample", "autos", "-o", "a.csv", cwd=tmp_path)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: no example data set 'autos'; choose one of ['cars', 'churn']"
    r = mlops("data", "sample", "cars", "-o", "no/such/dir/a.csv", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == "error: folder no/such/dir does not exist"


def test_put_copies_a_file_to_a_url_and_refuses_mistakes(tmp_path: Path) -> None:
    assert mlops("data", "sample", "cars", "-o", "cars.csv", cwd=tmp_path).returncode == 0
    dest = tmp_path / "store" / "data"
    dest.mkdir(parents=True)
    r = mlops("data", "put", "cars.csv", f"file://{dest}/cars.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (dest / "cars.csv").read_bytes() == (tmp_path / "cars.csv").read_bytes()
    size = (tmp_path / "cars.csv").stat().st_size
    assert r.stdout.strip() == f"put cars.csv ({size} bytes) at file://{dest}/cars.csv"
    r = mlops("data", "put", "nope.csv", "s3://mlpipeline/data/x.csv", cwd=tmp_path)
    assert (r.returncode, r.stderr.strip()) == (2, "error: nope.csv is not a file")
    r = mlops("data", "put", "cars.csv", "data/cars.csv", cwd=tmp_path)
    assert r.stderr.strip() == "error: 'data/cars.csv' is not a URL (s3://bucket/key, ...)"
