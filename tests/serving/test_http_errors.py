"""One place maps errors to HTTP status codes: the kinds, and no route deciding a status itself."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mlops_control.traffic.router import BadAdminRequest, RouterStateConflict, UnknownAdminTarget
from mlops_core.errors import (
    ConflictError,
    InvalidInputError,
    MlopsError,
    NotFoundError,
    TooLargeError,
)
from serving.http_errors import NotReady, UpstreamFailed, status_for
from serving.http_middleware import BodyTooLarge, VersionNotServed
from serving.monitoring.feedback import BadFeedback, TooMuchFeedback, UnknownPrediction

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("error", "status"),
    [
        (InvalidInputError("x"), 400),
        (NotFoundError("x"), 404),
        (ConflictError("x"), 409),
        (TooLargeError("x"), 413),
        (MlopsError("x"), 400),
        (RuntimeError("x"), 500),
        (NotReady("x"), 503),
        (UpstreamFailed("x"), 502),
        (BodyTooLarge(10), 413),
        (VersionNotServed("x"), 404),
        (BadFeedback("x"), 400),
        (TooMuchFeedback("x"), 413),
        (UnknownPrediction("x"), 404),
        (BadAdminRequest("x"), 400),
        (UnknownAdminTarget("x"), 404),
        (RouterStateConflict("x"), 409),
    ],
)
def test_each_error_kind_has_one_status(error: BaseException, status: int) -> None:
    assert status_for(error) == status


def test_every_domain_error_derives_from_the_one_root() -> None:
    import mlops_core.errors as errors

    for name in ("InvalidInputError", "NotFoundError", "ConflictError", "TooLargeError"):
        assert issubclass(getattr(errors, name), MlopsError)


# An error status written as a literal next to a response: `status_code=404`, `"status": 409`.
_LITERAL_STATUS = re.compile(
    r"(status_code\s*=\s*|[\"']status[\"']\s*:\s*|_json\(send,\s*)[45]\d\d"
)


def test_no_module_but_http_errors_writes_an_error_status() -> None:
    offenders = []
    for package in ("serving", "mlops_core", "components", "pipelines", "mlops_demo", "mlops"):
        for path in (ROOT / package).rglob("*.py"):
            if path.name == "http_errors.py":
                continue
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if _LITERAL_STATUS.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not offenders, "\n".join(offenders)
