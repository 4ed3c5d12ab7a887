"""The drift statistics against scipy's reference implementations and a direct PSI formula, and
the detector's behaviour on every scenario of the project's churn generator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlops_core.churn_data import CHURN_SCHEMA, SCENARIOS, generate_churn
from mlops_core.drift import (
    DriftThresholds,
    FeatureProfile,
    ReferenceProfile,
    chi_square,
    compare,
    compare_counts,
    ks_exact,
    ks_from_counts,
    profile_categorical,
    profile_numeric,
    profile_reference,
    psi,
)


def direct_psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """PSI written out term by term: sum over bins of (a_i - e_i) * ln(a_i / e_i)."""
    total = 0.0
    for e, a in zip(expected, actual, strict=True):
        total += (a - e) * np.log(a / e)
    return total


def test_psi_matches_the_direct_formula_on_bins_without_empty_cells() -> None:
    rng = np.random.default_rng(1)
    expected = rng.dirichlet(np.ones(12))
    counts = rng.multinomial(5000, rng.dirichlet(np.ones(12))).astype(float)
    assert np.all(counts > 0)
    assert psi(expected, counts) == pytest.approx(
        direct_psi(expected, counts / counts.sum()), rel=1e-9
    )


def test_psi_is_zero_for_identical_distributions_and_grows_with_the_shift() -> None:
    expected = np.array([0.25, 0.25, 0.25, 0.25])
    assert psi(expected, expected * 1000) == pytest.approx(0.0, abs=1e-12)
    small = psi(expected, np.array([270.0, 250, 250, 230]))
    large = psi(expected, np.array([400.0, 300, 200, 100]))
    assert 0 < small < large


def test_psi_keeps_empty_bins_finite() -> None:
    value = psi(np.array([0.5, 0.5, 0.0]), np.array([0.0, 10.0, 10.0]))
    assert np.isfinite(value) and value > 1.0


def test_ks_from_counts_equals_ks_2samp_when_every_value_has_its_bucket() -> None:
    rng = np.random.default_rng(2)
    ref = rng.poisson(2.0, 4000).astype(float)
    cur = rng.poisson(2.4, 1500).astype(float)
    # One bucket per distinct value: the binned CDF is the exact empirical CDF.
    edges = tuple(float(v) for v in np.unique(np.concatenate([ref, cur])))
    profile = FeatureProfile("tickets", "numeric", (), edges, count=len(ref))
    props = profile.bucket_counts(ref) / len(ref)
    d, p = ks_from_counts(props, profile.bucket_counts(cur), len(ref))
    expected = stats.ks_2samp(ref, cur, method="asymp")
    assert d == pytest.approx(expected.statistic, abs=1e-12)
    assert p == pytest.approx(expected.pvalue, rel=1e-6)


def test_ks_from_quantile_bins_tracks_ks_2samp_on_continuous_data() -> None:
    rng = np.random.default_rng(3)
    ref = rng.normal(0, 1, 20000)
    for shift in (0.0, 0.05, 0.2, 0.5):
        cur = rng.normal(shift, 1, 3000)
        profile = profile_numeric("x", ref, bins=20)
        d, _ = ks_from_counts(np.asarray(profile.proportions), profile.bucket_counts(cur), 20000)
        exact = stats.ks_2samp(ref, cur).statistic
        # Binning only evaluates the CDFs at the bucket edges: never above, and close to, exact.
        assert d <= exact + 1e-12
        assert exact - d < 0.03


def test_ks_exact_is_scipys_ks_2samp() -> None:
    rng = np.random.default_rng(4)
    a, b = rng.normal(0, 1, 500), rng.normal(0.3, 1, 700)
    r = stats.ks_2samp(a, b, method="asymp")
    assert ks_exact(a, b) == pytest.approx((r.statistic, r.pvalue))


def test_chi_square_matches_scipy_chisquare_on_raw_categories() -> None:
    rng = np.random.default_rng(5)
    cats = np.array(["a", "b", "c", "d"])
    ref = rng.choice(cats, 8000, p=[0.4, 0.3, 0.2, 0.1])
    cur = rng.choice(cats, 2000, p=[0.3, 0.3, 0.25, 0.15])
    profile = profile_categorical("c", ref)
    stat, p, v = chi_square(np.asarray(profile.proportions), profile.bucket_counts(cur))
    observed = pd.Series(cur).value_counts().reindex(cats).to_numpy()
    ref_share = pd.Series(ref).value_counts(normalize=True).reindex(cats).to_numpy()
    # The profile adds an "unseen category" bucket with a floor of expected mass and no
    # observations; scipy gets the same cells.
    eps = 1e-4
    exp_share = np.append(ref_share, eps) / (1 + eps)
    expected = stats.chisquare(np.append(observed, 0), exp_share * len(cur))
    assert stat == pytest.approx(expected.statistic, rel=1e-9)
    assert p == pytest.approx(expected.pvalue, rel=1e-6, abs=1e-300)
    assert v == pytest.approx(np.sqrt(expected.statistic / (len(cur) * 4)), rel=1e-9)


def test_an_unseen_category_registers_as_drift() -> None:
    profile = profile_categorical("pay", np.array(["card", "bank"] * 500))
    counts = profile.bucket_counts(np.array(["card"] * 400 + ["bank"] * 400 + ["crypto"] * 200))
    assert counts[-2] == 200  # the OTHER bucket
    _, p, v = chi_square(np.asarray(profile.proportions), counts)
    assert p < 1e-10 and v > 0.5


def test_compare_counts_equals_compare_on_the_same_data() -> None:
    ref_df = generate_churn(3000, seed=0)
    cur_df = generate_churn(1000, scenario="covariate_shift", seed=1)
    reference = profile_reference(ref_df, CHURN_SCHEMA)
    counts = {fp.name: fp.bucket_counts(cur_df[fp.name]) for fp in reference.features}
    a = compare(reference, cur_df)
    b = compare_counts(reference, counts, rows=len(cur_df))
    assert a == b


def test_reference_profile_round_trips_through_json_dict() -> None:
    reference = profile_reference(
        generate_churn(500, seed=0), CHURN_SCHEMA, predictions=np.linspace(0, 1, 500)
    )
    assert ReferenceProfile.from_dict(reference.to_dict()) == reference


# --- the detector on the generator's scenarios --------------------------------------------------


@pytest.fixture(scope="module")
def reference() -> ReferenceProfile:
    return profile_reference(generate_churn(20000, seed=0), CHURN_SCHEMA)


def test_false_alarm_rate_on_clean_traffic_is_below_one_percent(
    reference: ReferenceProfile,
) -> None:
    verdicts = []
    for seed in range(1, 21):
        report = compare(reference, generate_churn(2000, seed=seed))
        verdicts += [f.drifted for f in report.features]
    assert len(verdicts) == 20 * len(CHURN_SCHEMA.features)
    assert np.mean(verdicts) <= 0.01


# What each scenario must raise on the input side, and what it may raise besides (features that
# move as a consequence: total charges follow monthly charges; 10% of ages set to -7 is a small
# distribution change that the validate step's range check catches). concept_drift and label_shift
# leave the inputs alone by construction: they are caught by live quality on labelled traffic
# (tests/serving/test_feedback.py), so the input monitor must stay quiet on them.
MUST_DETECT: dict[str, set[str]] = {
    "clean": set(),
    "covariate_shift": {"monthly_charges"},
    "new_category": {"payment_method"},
    "concept_drift": set(),
    "label_shift": set(),
    "broken": {"tenure_months", "monthly_charges"},
}
MAY_DETECT: dict[str, set[str]] = {"covariate_shift": {"total_charges"}, "broken": {"age"}}


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_detection_on_each_scenario(reference: ReferenceProfile, scenario: str) -> None:
    assert set(MUST_DETECT) == set(SCENARIOS)
    report = compare(reference, generate_churn(3000, scenario=scenario, seed=7))
    flagged = {f.feature for f in report.drifted}
    assert MUST_DETECT[scenario] <= flagged
    assert flagged <= MUST_DETECT[scenario] | MAY_DETECT.get(scenario, set())


def test_thresholds_decide_the_verdict(reference: ReferenceProfile) -> None:
    current = generate_churn(3000, scenario="covariate_shift", seed=8)
    strict = compare(reference, current)
    lax = compare(reference, current, thresholds=DriftThresholds(psi=50, ks_statistic=1.0))
    assert strict.drifted and not lax.drifted


def test_text_columns_are_counted_as_the_general_path_counts_them() -> None:
    # The predictor's rows (str and None only) take a per-distinct-value count; any other column
    # (here the same values with one number among them) goes through pandas. Same buckets.
    profile = profile_categorical("pay", pd.Series(["card", "bank", "card", "cash"]))
    values = ["card", None, "crypto", "bank", "card", None, "cash", "card"] * 50
    fast = profile.bucket_counts(np.array(values, dtype=object))
    general = profile.bucket_counts(np.array([*values, 7], dtype=object))
    cats = list(profile.categories)
    expected = [values.count(c) for c in cats] + [50, 100]  # OTHER: "crypto"; missing: None
    assert fast.tolist() == expected
    assert general.tolist() == [*expected[:-2], 51, 100]  # 7 -> "7": an unseen category
