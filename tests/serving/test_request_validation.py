"""The schema checks on their own: what the model receives, and what is refused."""

from __future__ import annotations

import re

import numpy as np
import pytest
from kserve.protocol.infer_type import InferInput

from components.train import model_input
from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from serving.request_validation import (
    InvalidRequest,
    RequestLimits,
    RequestValidator,
    v2_datatype,
)
from serving.v1_instances import v1_instances

VALIDATOR = RequestValidator(CHURN_SCHEMA, RequestLimits(max_rows=10))
DF = generate_churn(8, seed=61).drop(columns=[CHURN_SCHEMA.target])


def rows_as_objects() -> list[dict[str, object]]:
    return v1_instances(DF)


def assert_same_model_input(got: np.ndarray) -> None:
    want = model_input(DF, CHURN_SCHEMA)
    assert got.shape == want.shape and got.dtype == object
    for j, f in enumerate(CHURN_SCHEMA.features):
        if f.is_numeric:
            np.testing.assert_array_equal(got[:, j].astype(float), want[:, j].astype(float))
        else:
            assert list(got[:, j]) == list(want[:, j])


def test_v1_objects_lists_and_v2_give_the_training_input() -> None:
    objects = rows_as_objects()
    assert_same_model_input(VALIDATOR.from_v1({"instances": objects}))
    lists = [[r[n] for n in CHURN_SCHEMA.feature_names] for r in objects]
    assert_same_model_input(VALIDATOR.from_v1({"instances": lists}))
    inputs = [
        InferInput(f.name, [len(objects), 1], v2_datatype(f), [[r[f.name]] for r in objects])
        for f in CHURN_SCHEMA.features
    ]
    assert_same_model_input(VALIDATOR.from_v2(inputs))


def test_undecoded_json_bytes_are_decoded() -> None:
    body = b'{"instances": [[1, 50.0, null, 30, 0, 4, null, "one-year", null, "dsl", "west"]]}'
    out = VALIDATOR.from_v1(body)
    assert out[0, 0] == 1.0 and np.isnan(out[0, 2]) and out[0, 8] is None


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"tenure_months": 10**400}, "out of range"),
        ({"monthly_charges": float("inf")}, "infinite"),
        ({"monthly_charges": float("nan")}, "required, got NaN"),
        ({"contract": None}, "'contract' (row 0) is required"),
        ({"region": ["east"]}, "expected a string category"),
    ],
)
def test_refusals_name_feature_and_row(change: dict[str, object], message: str) -> None:
    row = rows_as_objects()[0] | change
    with pytest.raises(InvalidRequest) as info:
        VALIDATOR.from_v1({"instances": [row]})
    assert message in str(info.value)


def test_unseen_policy_passes_unknown_categories_through() -> None:
    lenient = RequestValidator(CHURN_SCHEMA, RequestLimits(unknown_category="unseen"))
    row = rows_as_objects()[0] | {"payment_method": "crypto"}
    out = lenient.from_v1({"instances": [row]})
    assert out[0, CHURN_SCHEMA.index_of("payment_method")] == "crypto"


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="unknown_category"):
        RequestLimits(unknown_category="sometimes")
    with pytest.raises(ValueError, match="max_rows"):
        RequestLimits(max_rows=0)


def test_a_v2_key_tensor_becomes_rows_of_the_key_and_the_features_sent_with_it() -> None:
    key = InferInput("customer_id", [3, 1], "INT64", [[100042], [7.0], [100042]])
    contract = InferInput("contract", [3], "BYTES", ["one-year", None, "month-to-month"])
    assert VALIDATOR.v2_keyed_rows([key, contract], "customer_id") == [
        {"customer_id": 100042, "contract": "one-year"},
        {"customer_id": 7, "contract": None},  # a whole float is read as the integer key
        {"customer_id": 100042, "contract": "month-to-month"},
    ]
    assert VALIDATOR.v2_keyed_rows([contract], "customer_id") is None  # no key: not by key


@pytest.mark.parametrize(
    ("key", "others", "message"),
    [
        (InferInput("customer_id", [1], "FP64", [1.5]), [], "datatype FP64; send the keys as"),
        (InferInput("customer_id", [2], "INT64", [1, None]), [], "(row 1): expected a whole"),
        (InferInput("customer_id", [1], "BYTES", [5]), [], "(row 0): expected a string"),
        (InferInput("customer_id", [2], "INT64", [1]), [], "declares shape [2] but holds 1"),
        (InferInput("customer_id", [0], "INT64", []), [], "'inputs[customer_id]' is empty"),
        (InferInput("customer_id", [11], "INT64", [1] * 11), [], "over this server's limit"),
        (
            InferInput("customer_id", [1], "INT64", [1]),
            [InferInput("tenure", [1], "FP64", [3.0])],
            "unknown input 'tenure'",
        ),
        (
            InferInput("customer_id", [1], "INT64", [1]),
            [InferInput("age", [2], "FP64", [3.0, 4.0])],
            "input 'age' has 2 rows but the key 'customer_id' has 1",
        ),
    ],
)
def test_a_bad_v2_key_request_is_refused_naming_the_problem(
    key: InferInput, others: list[InferInput], message: str
) -> None:
    with pytest.raises(InvalidRequest, match=re.escape(message)):
        VALIDATOR.v2_keyed_rows([key, *others], "customer_id")
