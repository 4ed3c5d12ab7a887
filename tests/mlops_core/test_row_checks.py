"""Row checks for tables: the serving validator's rules, one reason per bad value, good rows kept."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.row_checks import CodedColumn, check_rows, check_table
from mlops_core.schema import SchemaError
from serving.request_validation import InvalidRequest, RequestLimits, RequestValidator


def _frame(n: int = 6) -> pd.DataFrame:
    return generate_churn(n, seed=3)[CHURN_SCHEMA.feature_names].reset_index(drop=True)


def _required_numeric() -> str:
    return next(f.name for f in CHURN_SCHEMA.numeric_features if not f.nullable)


def _categorical() -> str:
    return CHURN_SCHEMA.categorical_features[0].name


BAD_CASES = {
    "infinite": lambda df: df.assign(
        **{_required_numeric(): df[_required_numeric()].where(df.index != 0, math.inf)}
    ),
    "required null": lambda df: df.assign(
        **{_required_numeric(): df[_required_numeric()].where(df.index != 0, np.nan)}
    ),
    "unknown category": lambda df: df.assign(
        **{_categorical(): df[_categorical()].where(df.index != 0, "martian")}
    ),
}


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_a_row_serving_rejects_is_rejected_with_a_reason(case: str) -> None:
    frame = BAD_CASES[case](_frame())
    checked = check_rows(frame, CHURN_SCHEMA)
    assert list(checked.good) == [False] + [True] * 5
    assert checked.reasons[0] and CHURN_SCHEMA.feature_names[0] != ""
    # the serving validator refuses the same row (as a one-row V1 request), and accepts the others
    validator = RequestValidator(CHURN_SCHEMA, RequestLimits())
    rows = frame.astype(object).where(frame.notna(), None).to_dict("records")
    with pytest.raises(InvalidRequest):
        validator.from_v1({"instances": rows[:1]})
    validator.from_v1({"instances": rows[1:]})


def test_text_that_is_not_a_number_is_named_in_the_reason() -> None:
    frame = _frame().astype(object)
    name = _required_numeric()
    frame.loc[2, name] = "abc"
    checked = check_rows(frame, CHURN_SCHEMA)
    assert not checked.good[2] and checked.good.sum() == 5
    assert checked.reasons[2] == f"feature '{name}': expected a number, got 'abc'"
    assert np.isnan(checked.columns[CHURN_SCHEMA.index_of(name)][2])


def test_every_reason_of_a_row_is_kept() -> None:
    frame = _frame()
    frame[_required_numeric()] = frame[_required_numeric()].astype(float)
    frame.loc[1, _required_numeric()] = math.inf
    frame.loc[1, _categorical()] = "martian"
    reason = check_rows(frame, CHURN_SCHEMA).reasons[1]
    assert "infinite" in reason and "unknown category" in reason and "; " in reason


def test_unseen_policy_keeps_unknown_categories() -> None:
    frame = BAD_CASES["unknown category"](_frame())
    assert check_rows(frame, CHURN_SCHEMA, unknown_category="unseen").good.all()


def test_a_missing_column_is_an_error_for_the_whole_table() -> None:
    with pytest.raises(SchemaError, match="lacks feature column"):
        check_rows(_frame().drop(columns=[_categorical()]), CHURN_SCHEMA)


# --- check_table: the same rules on an Arrow batch, column-wise ---------------------------------
def _batch(frame: pd.DataFrame, *, dictionary: bool) -> pa.RecordBatch:
    batch = pa.RecordBatch.from_pandas(frame, preserve_index=False)
    if not dictionary:
        return batch
    columns = [pc.dictionary_encode(c) if pa.types.is_string(c.type) else c for c in batch.columns]
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


def _same_verdicts(frame: pd.DataFrame, batch: pa.RecordBatch, **kw) -> None:
    expected = check_rows(frame, CHURN_SCHEMA, **kw)
    got = check_table(batch, CHURN_SCHEMA, **kw)
    assert list(got.good) == list(expected.good)
    assert list(got.reasons) == list(expected.reasons)
    for mine, theirs in zip(got.columns, expected.columns, strict=True):
        mine = mine.to_objects() if isinstance(mine, CodedColumn) else mine
        if theirs.dtype == object:
            assert list(mine) == list(theirs)
        else:
            np.testing.assert_array_equal(mine, theirs)


@pytest.mark.parametrize("dictionary", [False, True], ids=["string", "dictionary"])
@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_check_table_gives_the_verdicts_check_rows_gives(case: str, dictionary: bool) -> None:
    frame = BAD_CASES[case](_frame(50))
    frame.loc[3, CHURN_SCHEMA.categorical_features[1].name] = None  # a nullable category: kept
    _same_verdicts(frame, _batch(frame, dictionary=dictionary))
    _same_verdicts(frame, _batch(frame, dictionary=dictionary), unknown_category="unseen")


def test_check_table_takes_text_numbers_through_the_pandas_rules() -> None:
    # CSV gives numeric features as text: parsed with pandas' rules, the bad text named.
    frame = _frame().astype({_required_numeric(): str})
    frame.loc[2, _required_numeric()] = "abc"
    checked = check_table(_batch(frame, dictionary=False), CHURN_SCHEMA)
    assert not checked.good[2] and checked.good.sum() == 5
    assert checked.reasons[2] == f"feature '{_required_numeric()}': expected a number, got 'abc'"


def test_a_null_in_the_dictionary_is_a_missing_value() -> None:
    frame = _frame()
    name = _categorical()  # required: a null is rejected
    values = frame[name].tolist()
    dictionary = pa.array([None, *sorted(set(values))])
    indices = pa.array([0] + [dictionary.to_pylist().index(v) for v in values[1:]], pa.int32())
    batch = _batch(frame, dictionary=False)
    batch = batch.set_column(
        batch.schema.get_field_index(name),
        name,
        pa.DictionaryArray.from_arrays(indices, dictionary),
    )
    checked = check_table(batch, CHURN_SCHEMA)
    assert list(checked.good) == [False] + [True] * 5
    assert checked.reasons[0] == f"feature '{name}' is required, got null"
    coded = checked.columns[CHURN_SCHEMA.index_of(name)]
    assert isinstance(coded, CodedColumn) and list(coded.to_objects()) == [None, *values[1:]]
