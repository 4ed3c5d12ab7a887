"""The registry on the S3 API: conditional PutObject (If-None-Match: *) as create-if-absent.

Runs against moto's S3 server on 127.0.0.1 over real HTTP (s3fs -> botocore -> HTTP), the same
client path the cluster uses against MinIO. moto implements the precondition (412 when the key
exists), so a lost race is really decided by the store, not by the client.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from mlops_core.churn_data import CHURN_SCHEMA, generate_churn
from mlops_core.drift import profile_reference
from mlops_core.registry import ChampionConflictError, ModelRegistry
from mlops_core.registry_store import AtomicStore

BUCKET = "mlpipeline"


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
    ).create_bucket(Bucket=BUCKET)  # fmt: skip
    yield url
    server.stop()


def _registry(endpoint: str, prefix: str) -> ModelRegistry:
    return ModelRegistry(
        f"s3://{BUCKET}/{prefix}",
        key="test",
        secret="test",
        client_kwargs={"endpoint_url": endpoint, "region_name": "us-east-1"},
        skip_instance_cache=True,
    )


def test_create_if_absent_is_decided_by_the_store(s3_endpoint: str) -> None:
    store = AtomicStore(_registry(s3_endpoint, "cia").fs)
    assert store.kind == "s3"
    path = f"{BUCKET}/cia/claim.json"
    assert store.create_if_absent(path, b"first") is True
    assert store.create_if_absent(path, b"second") is False
    assert store.read(path) == b"first"


def test_two_clients_share_one_s3_registry(s3_endpoint: str, tmp_path: Path) -> None:
    a, b = _registry(s3_endpoint, "shared"), _registry(s3_endpoint, "shared")
    artifact = tmp_path / "model.skops"
    artifact.write_bytes(b"bytes")
    reference = profile_reference(generate_churn(200, seed=2), CHURN_SCHEMA)
    kw = {"schema": CHURN_SCHEMA, "reference": reference}
    v1 = a.register("churn", str(artifact), **kw).version
    v2 = b.register("churn", str(artifact), **kw).version  # b's listing is not a's cache
    assert (v1, v2) == (1, 2)
    a.set_champion("churn", v1, reason="a", expected=None)
    with pytest.raises(ChampionConflictError):
        b.set_champion("churn", v2, reason="b compared with nothing", expected=None)
    assert b.champion("churn") == 1
    assert [v.version for v in b.versions("churn")] == [1, 2]
