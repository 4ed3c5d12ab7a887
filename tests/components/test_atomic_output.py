"""`AtomicOutput` on an object store (moto's S3 server on 127.0.0.1, real HTTP through s3fs):
nothing is uploaded until `commit`, which is one put; a discarded write leaves the old object."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import boto3
import fsspec
import pytest
from moto.server import ThreadedMotoServer

from components.atomic_output import AtomicOutput, same_path

BUCKET = "mlpipeline"


@pytest.fixture
def s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[boto3.client]:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    options = {"endpoint_url": url, "region_name": "us-east-1"}
    client = boto3.client("s3", aws_access_key_id="test", aws_secret_access_key="test", **options)
    client.create_bucket(Bucket=BUCKET)
    # What a user sets for a MinIO-style endpoint: fsspec's per-protocol configuration.
    monkeypatch.setitem(
        fsspec.config.conf,
        "s3",
        {"key": "test", "secret": "test", "client_kwargs": options, "skip_instance_cache": True},
    )
    yield client
    server.stop()


def test_a_discarded_write_leaves_the_old_object_and_a_commit_is_one_put(s3) -> None:
    uri = f"s3://{BUCKET}/batch/scores.parquet"
    s3.put_object(Bucket=BUCKET, Key="batch/scores.parquet", Body=b"previous scores")
    failed = AtomicOutput(uri)
    failed.open().write(b"half a run")
    failed.discard()
    assert s3.get_object(Bucket=BUCKET, Key="batch/scores.parquet")["Body"].read() == (
        b"previous scores"
    )
    done = AtomicOutput(uri)
    done.open().write(b"new scores")
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]]
    assert keys == ["batch/scores.parquet"]  # nothing uploaded while writing
    done.commit()
    assert s3.get_object(Bucket=BUCKET, Key="batch/scores.parquet")["Body"].read() == b"new scores"


def test_same_path_resolves_local_links_and_compares_urls(tmp_path) -> None:
    (tmp_path / "a.parquet").write_bytes(b"x")
    (tmp_path / "link.parquet").symlink_to(tmp_path / "a.parquet")
    assert same_path(str(tmp_path / "a.parquet"), str(tmp_path / "link.parquet"))
    assert same_path(str(tmp_path / "a.parquet"), f"file://{tmp_path}/./a.parquet")
    assert not same_path(str(tmp_path / "a.parquet"), str(tmp_path / "b.parquet"))
    assert same_path(f"s3://{BUCKET}/x.parquet", f"s3://{BUCKET}/x.parquet")
    assert not same_path(f"s3://{BUCKET}/x.parquet", f"s3://{BUCKET}/y.parquet")
