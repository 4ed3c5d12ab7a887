"""Validate: schema checks on new data and statistical checks against the champion's reference.

Schema violations (types, ranges, unknown categories, missing rates, nulls in required columns, a
target that is not binary) always fail the step. Drift against the reference (PSI/KS/chi-square
from `mlops_core.drift`, the same code the live monitor runs) and label shift are reported, and
fail the step only when the caller asks (`fail_on_drift`): a drift-triggered retraining run must be
able to train on drifted data. A feature that alone predicts the target almost perfectly
(`components.leakage`) is reported as possible target leakage, and fails the step only with
`fail_on_leakage`. Either way the step writes a Markdown report that names each failing column
and why.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from components.leakage import LeakageFinding, leaking_features
from mlops_core.drift import (
    DriftReport,
    DriftThresholds,
    FeatureDrift,
    FeatureProfile,
    ReferenceProfile,
    compare,
    feature_drift,
)
from mlops_core.errors import MlopsError
from mlops_core.schema import Feature, FeatureSchema
from mlops_core.step_timing import timed_step
from mlops_core.target import label_key

_EXAMPLES = 3  # offending values quoted per violation


class DataValidationError(MlopsError):
    """The data broke the schema (or drifted with `fail_on_drift`); `report` has the details.

    `report` is None where only the step's summary was read (`require_valid_data`).
    """

    def __init__(self, message: str, report: ValidationReport | None) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class Violation:
    column: str
    check: str  # type | range | category | missing | required | target
    detail: str
    count: int
    fraction: float


@dataclass(frozen=True)
class ValidationReport:
    rows: int
    violations: tuple[Violation, ...]
    drift: DriftReport | None = None
    label_shift: FeatureDrift | None = None
    positive_rate: float = float("nan")
    reference_positive_rate: float | None = None
    fail_on_drift: bool = False
    notes: tuple[str, ...] = field(default_factory=tuple)
    leakage: tuple[LeakageFinding, ...] = ()
    leakage_threshold: float | None = None  # None: the check did not run
    fail_on_leakage: bool = False

    @property
    def leaking_columns(self) -> list[str]:
        return [f.feature for f in self.leakage]

    @property
    def drifted_columns(self) -> list[str]:
        cols = [f.feature for f in self.drift.drifted] if self.drift else []
        if self.label_shift is not None and self.label_shift.drifted:
            cols.append(self.label_shift.feature)
        return cols

    @property
    def failing_columns(self) -> list[str]:
        cols = list(dict.fromkeys(v.column for v in self.violations))
        if self.fail_on_drift:
            cols += [c for c in self.drifted_columns if c not in cols]
        if self.fail_on_leakage:
            cols += [c for c in self.leaking_columns if c not in cols]
        return cols

    @property
    def passed(self) -> bool:
        return not self.failing_columns

    def leakage_warning(self) -> str:
        """One line naming each feature that may leak the target ("" when none)."""
        if not self.leakage:
            return ""
        found = "; ".join(f.describe() for f in self.leakage)
        return (
            f"possible target leakage in {self.leaking_columns} (threshold "
            f"{self.leakage_threshold}): {found}; --drop it if it is not known before the outcome"
        )

    def summary(self) -> str:
        if self.passed:
            drifted = self.drifted_columns
            tail = f"; drift reported (not fatal) in {drifted}" if drifted else ""
            if self.leakage:
                tail += f"; {self.leakage_warning()} (not fatal without --fail-on-leakage)"
            return f"data validation passed on {self.rows} rows{tail}"
        parts = [f"{v.column}: {v.detail}" for v in self.violations]
        if self.fail_on_drift and self.drift:
            parts += [f"{f.feature}: drifted ({f.reason})" for f in self.drift.drifted]
        if self.fail_on_drift and self.label_shift is not None and self.label_shift.drifted:
            parts.append(f"{self.label_shift.feature}: label shift ({self.label_shift.reason})")
        if self.fail_on_leakage:
            parts += [f"{f.feature}: target leakage ({f.describe()})" for f in self.leakage]
        return f"data validation failed for columns {self.failing_columns}: " + "; ".join(parts)

    def metrics(self) -> dict[str, float]:
        out = {
            "rows": float(self.rows),
            "schema_violations": float(len(self.violations)),
            "positive_rate": self.positive_rate,
        }
        if self.drift is not None:
            out["drifted_features"] = float(len(self.drift.drifted))
            out["share_drifted"] = self.drift.share_drifted
            out["max_psi"] = max((f.psi for f in self.drift.features), default=0.0)
        if self.label_shift is not None:
            out["label_psi"] = self.label_shift.psi
        if self.leakage_threshold is not None:
            out["leaking_features"] = float(len(self.leakage))
        return out

    def to_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        doc.update(
            passed=self.passed,
            failing_columns=self.failing_columns,
            leakage_warning=self.leakage_warning(),
        )
        return doc


# --- schema checks -----------------------------------------------------------------------------


def _violation(col: str, check: str, detail: str, mask: np.ndarray, n: int) -> Violation:
    count = int(mask.sum())
    return Violation(col, check, detail, count, count / n if n else 0.0)


def _examples(values: pd.Series) -> str:
    shown = [repr(v) for v in pd.unique(values)[:_EXAMPLES].tolist()]
    return ", ".join(shown)


def check_feature(feature: Feature, raw: pd.Series) -> list[Violation]:
    """Every schema rule one column breaks (empty when it fits)."""
    n = len(raw)
    out: list[Violation] = []
    missing = raw.isna().to_numpy()
    if not feature.nullable and missing.any():
        out.append(
            _violation(
                feature.name,
                "required",
                f"{int(missing.sum())} null values in a required column",
                missing,
                n,
            )
        )
    rate = float(missing.mean()) if n else 0.0
    if rate > feature.max_missing_rate and feature.nullable:
        out.append(
            _violation(
                feature.name,
                "missing",
                f"missing rate {rate:.1%} above the allowed {feature.max_missing_rate:.1%}",
                missing,
                n,
            )
        )
    if feature.is_numeric:
        values = pd.to_numeric(raw, errors="coerce")
        unparsable = (values.isna() & ~raw.isna()).to_numpy()
        if unparsable.any():
            out.append(
                _violation(
                    feature.name,
                    "type",
                    f"{int(unparsable.sum())} values are not numbers "
                    f"(e.g. {_examples(raw[unparsable])})",
                    unparsable,
                    n,
                )
            )
        x = values.to_numpy(float)
        present = ~np.isnan(x)
        if feature.dtype == "int":
            fractional = present & (np.mod(np.where(present, x, 0), 1) != 0)
            if fractional.any():
                out.append(
                    _violation(
                        feature.name,
                        "type",
                        f"{int(fractional.sum())} non-integer values in an int column "
                        f"(e.g. {_examples(values[fractional])})",
                        fractional,
                        n,
                    )
                )
        lo = -np.inf if feature.min is None else feature.min
        hi = np.inf if feature.max is None else feature.max
        outside = present & ((x < lo) | (x > hi))
        if outside.any():
            out.append(
                _violation(
                    feature.name,
                    "range",
                    f"{int(outside.sum())} values outside [{feature.min}, {feature.max}] "
                    f"(e.g. {_examples(values[outside])})",
                    outside,
                    n,
                )
            )
    else:
        as_str = raw[~missing].astype(str)
        unknown_mask = ~as_str.isin(feature.categories).to_numpy()
        if unknown_mask.any():
            mask = np.zeros(n, dtype=bool)
            mask[np.flatnonzero(~missing)[unknown_mask]] = True
            out.append(
                _violation(
                    feature.name,
                    "category",
                    f"{int(unknown_mask.sum())} values in categories the schema does not allow: "
                    f"{sorted(pd.unique(as_str[unknown_mask]))[:10]} "
                    f"(allowed: {list(feature.categories)})",
                    mask,
                    n,
                )
            )
    return out


def check_target(schema: FeatureSchema, raw: pd.Series) -> list[Violation]:
    """Classes: every value one of the schema's labels, at least two present; regression: numbers."""
    n = len(raw)
    if schema.task == "regression":
        y = pd.to_numeric(raw, errors="coerce")
        bad = (~np.isfinite(y.astype(float))).to_numpy()
        expected, distinct = "finite numbers", y.nunique()
    else:
        classes = schema.label_classes
        keys = raw.map(label_key)
        bad = (raw.isna() | ~keys.isin({label_key(c) for c in classes})).to_numpy()
        expected, distinct = f"one of {list(classes)}", keys[~bad].nunique()
    if bad.any():
        return [
            _violation(
                schema.target,
                "target",
                f"{int(bad.sum())} target values are not {expected} (e.g. {_examples(raw[bad])})",
                bad,
                n,
            )
        ]
    if distinct < 2:
        what = "a single class" if schema.is_classifier else "a single value"
        return [Violation(schema.target, "target", f"the target has {what}", n, 1.0)]
    return []


def check_schema(df: pd.DataFrame, schema: FeatureSchema) -> list[Violation]:
    missing_cols = [c for c in [*schema.feature_names, schema.target] if c not in df.columns]
    out = [
        Violation(c, "missing", "column absent from the data", len(df), 1.0) for c in missing_cols
    ]
    for f in schema.features:
        if f.name in df.columns:
            out += check_feature(f, df[f.name])
    if schema.target in df.columns:
        out += check_target(schema, df[schema.target])
    return out


# --- statistical checks ------------------------------------------------------------------------


def label_shift(
    y: pd.Series, reference_positive_rate: float, thresholds: DriftThresholds
) -> FeatureDrift:
    """Target distribution vs the champion's training positive rate, with drift.py's statistics."""
    p = float(reference_positive_rate)
    y = y.astype(str)  # "0"/"1": the encoded classes
    profile = FeatureProfile(
        name=str(y.name),
        kind="categorical",
        proportions=(1.0 - p, p, 0.0, 0.0),  # "0", "1", other, missing
        categories=("0", "1"),
        count=0,
    )
    return feature_drift(profile, profile.bucket_counts(y.to_numpy()), thresholds)


def validate_frame(
    df: pd.DataFrame,
    schema: FeatureSchema,
    *,
    reference: ReferenceProfile | None = None,
    reference_positive_rate: float | None = None,
    thresholds: DriftThresholds | None = None,
    fail_on_drift: bool = False,
    leakage_threshold: float | None = None,
    fail_on_leakage: bool = False,
) -> ValidationReport:
    """Schema, drift and label checks; with `leakage_threshold`, the target leakage check too."""
    thresholds = thresholds or DriftThresholds()
    violations = check_schema(df, schema)
    notes: list[str] = []
    drift = None
    absent = [n for n in schema.feature_names if n not in df.columns]
    if reference is not None and absent:
        notes.append(f"drift checks skipped: the data lacks {absent}")
    elif reference is not None:
        ref_names = {f.name for f in reference.features}
        skipped = [n for n in schema.feature_names if n not in ref_names]
        if skipped:
            notes.append(f"no reference for {skipped}: new columns since the champion")
        drift = compare(reference, schema.coerce_frame(df), thresholds=thresholds)
    else:
        notes.append("no champion reference yet: drift checks skipped")
    positive_rate, shift = float("nan"), None
    failing = {v.column for v in violations}
    if schema.task == "binary" and schema.target in df.columns and schema.target not in failing:
        encoded = pd.Series(schema.encode_target(df[schema.target]), name=schema.target)
        positive_rate = float((encoded == 1).mean()) if len(encoded) else float("nan")
        if reference_positive_rate is not None and np.isfinite(reference_positive_rate):
            shift = label_shift(encoded, reference_positive_rate, thresholds)
    leakage: tuple[LeakageFinding, ...] = ()
    if leakage_threshold is not None:
        if failing or absent:
            notes.append("target leakage check skipped: the data breaks the schema")
        else:
            leakage = leaking_features(df, schema, leakage_threshold)
    return ValidationReport(
        rows=len(df),
        violations=tuple(violations),
        drift=drift,
        label_shift=shift,
        positive_rate=positive_rate,
        reference_positive_rate=reference_positive_rate,
        fail_on_drift=fail_on_drift,
        notes=tuple(notes),
        leakage=leakage,
        leakage_threshold=leakage_threshold,
        fail_on_leakage=fail_on_leakage,
    )


# --- the report --------------------------------------------------------------------------------


def render_markdown(report: ValidationReport, *, title: str = "Data validation report") -> str:
    status = "PASSED" if report.passed else "FAILED"
    lines = [f"# {title}", "", f"**Status: {status}** ({report.rows} rows)", ""]
    if not report.passed:
        lines += [f"Failing columns: {', '.join(f'`{c}`' for c in report.failing_columns)}", ""]
    lines += ["## Schema checks", ""]
    if report.violations:
        lines += ["| column | check | rows | share | why |", "|---|---|---:|---:|---|"]
        lines += [
            f"| `{v.column}` | {v.check} | {v.count} | {v.fraction:.2%} | {v.detail} |"
            for v in report.violations
        ]
    else:
        lines.append("Every column fits the schema.")
    lines += ["", "## Drift against the champion's reference", ""]
    fatal = "fatal" if report.fail_on_drift else "reported, not fatal (fail_on_drift=False)"
    if report.drift is None:
        lines.append("Skipped: no champion reference yet.")
    else:
        lines += [
            f"Drift is {fatal}. Thresholds: PSI >= {report.drift.thresholds.psi}, "
            f"p < {report.drift.thresholds.alpha} with a material effect.",
            "",
            "| feature | test | PSI | statistic | p-value | effect | drifted | why |",
            "|---|---|---:|---:|---:|---:|---|---|",
        ]
        lines += [
            f"| `{f.feature}` | {f.test} | {f.psi:.4f} | {f.statistic:.4g} | {f.p_value:.3g} "
            f"| {f.effect:.3f} | {'**yes**' if f.drifted else 'no'} | {f.reason} |"
            for f in report.drift.features
        ]
    lines += ["", "## Label distribution", ""]
    if np.isfinite(report.positive_rate):
        lines.append(f"Positive rate: {report.positive_rate:.4f}")
    else:  # multiclass, regression: no positive class to count
        lines.append("Positive rate: not applicable (not a binary target)")
    if report.label_shift is not None and report.reference_positive_rate is not None:
        ls = report.label_shift
        lines.append(
            f"Champion's training positive rate: {report.reference_positive_rate:.4f}; "
            f"PSI {ls.psi:.4f}, chi-square p={ls.p_value:.3g}, Cramér's V {ls.effect:.3f}: "
            + (f"**label shift** ({ls.reason})" if ls.drifted else "no label shift")
        )
    lines += _leakage_section(report)
    if report.notes:
        lines += ["", "## Notes", "", *[f"- {n}" for n in report.notes]]
    return "\n".join(lines) + "\n"


def _leakage_section(report: ValidationReport) -> list[str]:
    lines = ["", "## Target leakage", ""]
    if report.leakage_threshold is None:
        return [*lines, "Skipped: not asked for."]
    fatal = "fatal" if report.fail_on_leakage else "reported, not fatal (fail_on_leakage=False)"
    lines.append(
        f"A feature whose own single-feature model scores at least {report.leakage_threshold} on "
        f"held-out rows is reported; leakage is {fatal}."
    )
    if not report.leakage:
        return [*lines, "", "No feature predicts the target on its own."]
    lines += ["", "| feature | metric | score alone |", "|---|---|---:|"]
    lines += [f"| `{f.feature}` | {f.metric} | {f.score:.4f} |" for f in report.leakage]
    return lines


# --- the pipeline step -------------------------------------------------------------------------


@timed_step("validate")
def validate_step(
    *,
    data_paths: list[str],
    schema_path: str,
    report_path: str,
    registry_uri: str,
    model_name: str,
    fail_on_drift: bool,
    leakage_threshold: float,
    fail_on_leakage: bool,
    thresholds: DriftThresholds | None = None,
    metrics_sink: Any = None,
    summary_path: str = "",
    raise_on_failure: bool = True,
) -> ValidationReport:
    """Validate the ingested Parquet files; write the Markdown report; raise when they fail.

    The reference is the champion's (`registry.reference`) when the registry has one.
    `metrics_sink` is anything with `log_metric(name, value)` (a KFP `Metrics` output).
    `raise_on_failure=False` (the KFP pipeline) returns a failed report instead of raising, so
    that the report reaches KFP as an artifact; `require_valid_data` fails the run after it.
    """
    from mlops_core.registry import ModelRegistry

    schema = FeatureSchema.load(schema_path)
    df = pd.concat([pd.read_parquet(p) for p in data_paths], ignore_index=True)
    reference = None
    reference_rate = None
    if registry_uri and model_name:
        registry = ModelRegistry(registry_uri)
        if registry.champion(model_name) is not None:
            reference = registry.reference(model_name)
            reference_rate = registry.get(model_name).metrics.get("train_positive_rate")
    report = validate_frame(
        df,
        schema,
        reference=reference,
        reference_positive_rate=reference_rate,
        thresholds=thresholds,
        fail_on_drift=fail_on_drift,
        leakage_threshold=leakage_threshold,
        fail_on_leakage=fail_on_leakage,
    )
    if report.leakage and report.passed:  # the task's log: the warning on one line
        print(f"warning: {report.leakage_warning()}")
    with open(report_path, "w") as fh:
        fh.write(render_markdown(report))
    if summary_path:
        with open(summary_path, "w") as fh:
            json.dump(report.to_dict() | {"summary": report.summary()}, fh, indent=2)
    if metrics_sink is not None:
        for name, value in report.metrics().items():
            if np.isfinite(value):
                metrics_sink.log_metric(name, round(float(value), 6))
    if raise_on_failure and not report.passed:
        raise DataValidationError(report.summary(), report)
    return report


def require_valid_data(*, summary_path: str, report_path: str = "") -> None:
    """Fail when the validate step's summary says the data failed; print its report first.

    A separate step because KFP (2.17's launcher, `uploadOutputArtifacts`) registers none of a
    failed task's outputs but its logs: the validate step succeeds with its report, this one fails.
    """
    with open(summary_path) as fh:
        doc = json.load(fh)
    if doc.get("passed"):
        return
    if report_path:
        with open(report_path) as fh:
            print(fh.read())
    raise DataValidationError(doc.get("summary") or "data validation failed", None)
