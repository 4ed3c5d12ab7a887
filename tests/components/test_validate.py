"""Validate: schema violations fail with a report naming the columns; drift is reported."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from kfp.dsl import Metrics

from components.validate import (
    DataValidationError,
    render_markdown,
    validate_frame,
    validate_step,
)
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.drift import profile_reference


@pytest.fixture(scope="module")
def reference():
    return profile_reference(generate_churn(4000, seed=10), CHURN_SCHEMA)


def test_clean_data_passes(reference) -> None:
    report = validate_frame(
        generate_churn(3000, seed=11), CHURN_SCHEMA, reference=reference, fail_on_drift=True
    )
    assert report.passed, report.summary()
    assert report.violations == ()
    assert report.drifted_columns == []


def test_broken_data_names_each_failing_column_and_why() -> None:
    report = validate_frame(generate_churn(2000, scenario="broken", seed=1), CHURN_SCHEMA)
    assert not report.passed
    assert report.failing_columns == ["tenure_months", "monthly_charges", "age"]
    checks = {(v.column, v.check): v for v in report.violations}
    assert checks[("tenure_months", "required")].count == 200
    assert checks[("monthly_charges", "type")].count == 200
    assert "'n/a'" in checks[("monthly_charges", "type")].detail
    assert checks[("age", "range")].count == 200
    md = render_markdown(report)
    assert "**Status: FAILED**" in md
    for col in ("tenure_months", "monthly_charges", "age"):
        assert f"| `{col}` |" in md


def test_unknown_category_and_missing_rate_are_violations() -> None:
    report = validate_frame(generate_churn(2000, scenario="new_category", seed=2), CHURN_SCHEMA)
    assert report.failing_columns == ["payment_method"]
    assert "crypto" in report.violations[0].detail
    df = generate_churn(1000, seed=3)
    df.loc[: len(df) // 2, "avg_session_minutes"] = None
    df.loc[:10, "age"] = 40.5
    df.loc[:3, "churned"] = 2
    failing = validate_frame(df, CHURN_SCHEMA).violations
    assert {(v.column, v.check) for v in failing} == {
        ("avg_session_minutes", "missing"),
        ("age", "type"),
        ("churned", "target"),
    }


def test_drift_is_reported_but_fatal_only_on_request(reference) -> None:
    drifted = generate_churn(3000, scenario="covariate_shift", seed=4)
    report = validate_frame(drifted, CHURN_SCHEMA, reference=reference)
    assert report.passed
    assert "monthly_charges" in report.drifted_columns
    strict = validate_frame(drifted, CHURN_SCHEMA, reference=reference, fail_on_drift=True)
    assert not strict.passed
    assert "monthly_charges" in strict.failing_columns
    assert "monthly_charges: drifted (PSI" in strict.summary()


def test_label_shift_is_checked_against_the_champion_positive_rate(reference) -> None:
    base_rate = float(generate_churn(4000, seed=10)["churned"].mean())
    clean = validate_frame(
        generate_churn(3000, seed=5), CHURN_SCHEMA, reference_positive_rate=base_rate
    )
    shifted = validate_frame(
        generate_churn(3000, scenario="label_shift", seed=5),
        CHURN_SCHEMA,
        reference_positive_rate=base_rate,
    )
    assert clean.label_shift is not None and not clean.label_shift.drifted
    assert shifted.label_shift is not None and shifted.label_shift.drifted
    assert shifted.drifted_columns == ["churned"]
    assert "label shift" in render_markdown(shifted)


def test_step_writes_the_report_then_raises(tmp_path: Path) -> None:
    data = tmp_path / "d.parquet"
    from components.ingest import arrow_safe

    arrow_safe(generate_churn(800, scenario="broken")).to_parquet(data)
    CHURN_SCHEMA.save(str(tmp_path / "schema.json"))
    report_path = tmp_path / "report.md"
    metrics = Metrics()  # the KFP output type the pipeline passes in

    with pytest.raises(DataValidationError, match=r"tenure_months.*monthly_charges.*age") as e:
        validate_step(
            data_paths=[str(data)],
            schema_path=str(tmp_path / "schema.json"),
            report_path=str(report_path),
            registry_uri="",
            model_name="",
            fail_on_drift=False,
            leakage_threshold=0.99,
            fail_on_leakage=False,
            metrics_sink=metrics,
        )
    assert e.value.report.failing_columns == ["tenure_months", "monthly_charges", "age"]
    assert "Failing columns: `tenure_months`, `monthly_charges`, `age`" in report_path.read_text()
    assert metrics.metadata["schema_violations"] == 3.0


def test_missing_column_is_reported(reference) -> None:
    df = generate_churn(100).drop(columns=["region"])
    report = validate_frame(pd.DataFrame(df), CHURN_SCHEMA, reference=reference)
    assert report.failing_columns == ["region"]
    assert "drift checks skipped" in report.notes[0]


def test_pipeline_mode_returns_the_failed_report_and_the_verdict_step_fails(tmp_path: Path) -> None:
    """On KFP the validate step must succeed so its report is kept; the next step fails the run."""
    from components.ingest import arrow_safe
    from components.validate import require_valid_data

    data = tmp_path / "d.parquet"
    arrow_safe(generate_churn(800, scenario="broken")).to_parquet(data)
    CHURN_SCHEMA.save(str(tmp_path / "schema.json"))
    report_path, summary_path = tmp_path / "report.md", tmp_path / "summary.json"
    report = validate_step(
        data_paths=[str(data)],
        schema_path=str(tmp_path / "schema.json"),
        report_path=str(report_path),
        summary_path=str(summary_path),
        registry_uri="",
        model_name="",
        fail_on_drift=False,
        leakage_threshold=0.99,
        fail_on_leakage=False,
        raise_on_failure=False,
    )
    assert not report.passed
    assert "**Status: FAILED**" in report_path.read_text()
    with pytest.raises(DataValidationError, match=r"tenure_months.*monthly_charges.*age") as e:
        require_valid_data(summary_path=str(summary_path), report_path=str(report_path))
    assert e.value.report is None


def test_the_verdict_step_passes_clean_data(tmp_path: Path) -> None:
    from components.validate import require_valid_data

    summary = tmp_path / "summary.json"
    summary.write_text('{"passed": true, "summary": "data validation passed on 10 rows"}')
    require_valid_data(summary_path=str(summary))


def _leaky_frame():
    from tests.tasks.datasets import market_frame, settled_schema

    df = market_frame()
    return df, settled_schema(df, "Direction")


def test_a_leaking_feature_is_named_in_a_warning_and_the_report() -> None:
    df, schema = _leaky_frame()
    report = validate_frame(df, schema, leakage_threshold=0.99)
    assert report.passed  # a warning only
    assert report.leaking_columns == ["Today"]
    assert "possible target leakage in ['Today']" in report.summary()
    assert "not fatal without --fail-on-leakage" in report.summary()
    md = render_markdown(report)
    assert "## Target leakage" in md and "| `Today` | roc_auc | 1.0000 |" in md
    assert report.metrics()["leaking_features"] == 1.0


def test_fail_on_leakage_fails_validation_naming_the_feature() -> None:
    df, schema = _leaky_frame()
    report = validate_frame(df, schema, leakage_threshold=0.99, fail_on_leakage=True)
    assert not report.passed
    assert report.failing_columns == ["Today"]
    assert report.summary().startswith("data validation failed for columns ['Today']: Today: ")
    assert "target leakage (Today alone reaches roc_auc" in report.summary()
    assert "**Status: FAILED**" in render_markdown(report)


def test_without_a_threshold_the_leakage_check_does_not_run() -> None:
    df, schema = _leaky_frame()
    report = validate_frame(df, schema)
    assert report.passed and report.leakage == ()
    assert "Skipped: not asked for." in render_markdown(report)


def test_the_step_fails_on_leakage_through_the_verdict_step(tmp_path: Path) -> None:
    from components.validate import require_valid_data

    df, schema = _leaky_frame()
    df.to_parquet(tmp_path / "d.parquet")
    schema.save(str(tmp_path / "schema.json"))
    report_path, summary_path = tmp_path / "report.md", tmp_path / "summary.json"
    validate_step(
        data_paths=[str(tmp_path / "d.parquet")],
        schema_path=str(tmp_path / "schema.json"),
        report_path=str(report_path),
        summary_path=str(summary_path),
        registry_uri="",
        model_name="",
        fail_on_drift=False,
        leakage_threshold=0.99,
        fail_on_leakage=True,
        raise_on_failure=False,
    )
    with pytest.raises(DataValidationError, match=r"columns \['Today'\]: Today: target leakage"):
        require_valid_data(summary_path=str(summary_path), report_path=str(report_path))
