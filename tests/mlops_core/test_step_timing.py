"""Step timing: records only when the benchmark asks, in the file it names."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_core.step_timing import ENV_VAR, read_timings, timed_step


@timed_step("demo")
def double(x: int) -> int:
    return 2 * x


def test_records_one_line_per_call_when_enabled(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "t.jsonl"
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert double(2) == 4
    assert read_timings(str(path)) == []
    monkeypatch.setenv(ENV_VAR, str(path))
    assert double(3) == 6 and double(4) == 8
    rows = read_timings(str(path))
    assert [r["step"] for r in rows] == ["demo", "demo"]
    assert all(0 <= float(r["seconds"]) < 60 for r in rows)


def test_a_failing_step_is_still_timed(tmp_path: Path, monkeypatch) -> None:
    @timed_step("boom")
    def boom() -> None:
        raise ValueError("bad data")

    monkeypatch.setenv(ENV_VAR, str(tmp_path / "t.jsonl"))
    with pytest.raises(ValueError, match="bad data"):
        boom()
    assert read_timings(str(tmp_path / "t.jsonl"))[0]["step"] == "boom"
