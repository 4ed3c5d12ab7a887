"""The feature store as a cluster holds it: the registry and the tables in an object store (moto's
S3 server over real HTTP, the client path the cluster uses against SeaweedFS) and the online
store in Redis from Debian's package (the online store image, run in Docker with a volume).

Materialization writes Redis; the values read back equal the training path's as of now; they
survive the Redis container being replaced over the same volume; and `mlops features serve`
answers lookups from the s3:// repository.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

import boto3
import pytest

from tests.feature_store_checks import as_of_now, assert_same_values, online_rows
from tests.images.image_build import Images

pytest.importorskip("feast", reason="the feature store needs the features extra (feast)")
pytest.importorskip("redis", reason="Feast's Redis online store needs the redis package")
from moto.server import ThreadedMotoServer
from s3fs import S3FileSystem

from components.feature_definitions import feature_names
from components.feature_store import (
    FeatureStoreConfig,
    FeatureStoreError,
    apply_definitions,
    online_features,
    write_tables,
)
from components.materialize_features import materialize_features
from mlops_control.traffic.model_server_process import free_port, mlops_executable
from mlops_core.churn_feature_tables import (
    ENTITY_KEY,
    FIRST_CUSTOMER_ID,
    generate_churn_tables,
    recent_start,
)
from mlops_demo.feature_serving import feature_server
from serving.feature_lookup import FeatureSource, UnknownEntityError

pytestmark = [pytest.mark.docker, pytest.mark.slow]
BUCKET = "mlops-features"
CUSTOMERS = 300


@pytest.fixture(scope="module")
def object_store() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    url = f"http://127.0.0.1:{port}"
    boto3.client(
        "s3", endpoint_url=url, region_name="us-east-1",
        aws_access_key_id="test", aws_secret_access_key="test",
    ).create_bucket(Bucket=BUCKET)  # fmt: skip
    yield url
    server.stop()


def _forget_s3_clients() -> None:
    S3FileSystem.clear_instance_cache()
    boto3.DEFAULT_SESSION = None


@pytest.fixture(scope="module")
def s3_env(object_store: str) -> Iterator[None]:
    """The AWS_* variables the cluster's pods get, for this process and the feature server's.

    fsspec keeps one S3 filesystem per set of arguments, whose endpoint was read from the
    environment when it was made: cleared on the way in and out, so neither this module nor a
    later one (the kind tests, on SeaweedFS) talks to the other's store. boto3's default session
    (Feast's S3 registry uses it) keeps the credentials it first read: dropped likewise."""
    _forget_s3_clients()
    with pytest.MonkeyPatch.context() as mp:
        for name, value in {
            "AWS_ENDPOINT_URL": object_store,
            "AWS_ACCESS_KEY_ID": "test",
            "AWS_SECRET_ACCESS_KEY": "test",
            "AWS_DEFAULT_REGION": "us-east-1",
        }.items():
            mp.setenv(name, value)
        yield
    _forget_s3_clients()


class Redis:
    """The online store image in Docker, its data on a named volume that outlives a container."""

    def __init__(self, image: str) -> None:
        self.image = image
        self.volume = f"mlops-online-store-test-{uuid.uuid4().hex[:8]}"
        self.port = free_port()
        self.container = ""

    def start(self) -> None:
        run = ["docker", "run", "-d", "-p", f"127.0.0.1:{self.port}:6379"]
        run += ["-v", f"{self.volume}:/data", self.image]
        self.container = subprocess.run(run, capture_output=True, text=True, check=True).stdout
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ping = self.cli("PING")
            if ping == "PONG":
                return
            time.sleep(0.2)
        raise AssertionError(f"Redis did not answer PING in 30 s: {self.logs()}")

    def cli(self, *args: str) -> str:
        out = ["docker", "exec", self.container.strip(), "redis-cli", *args]
        return subprocess.run(out, capture_output=True, text=True).stdout.strip()

    def logs(self) -> str:
        out = ["docker", "logs", self.container.strip()]
        return subprocess.run(out, capture_output=True, text=True).stderr[-2000:]

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "-f", self.container.strip()], capture_output=True)

    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def redis(images: Images) -> Iterator[Redis]:
    server = Redis(images.online_store)
    server.start()
    yield server
    server.remove()
    subprocess.run(["docker", "volume", "rm", "-f", server.volume], capture_output=True)


@pytest.fixture(scope="module")
def store(s3_env: None, redis: Redis) -> FeatureStoreConfig:
    config = FeatureStoreConfig(repo_path=f"s3://{BUCKET}/churn", online_store=redis.url())
    now = datetime.now(UTC)
    write_tables(config, generate_churn_tables(CUSTOMERS, seed=5, start=recent_start(now)))
    apply_definitions(config)
    summary = materialize_features(config, now)
    assert [v["materialized"] for v in summary["views"]] == [True, True], summary
    return config


def test_the_tables_and_registry_are_in_the_object_store(store: FeatureStoreConfig) -> None:
    s3 = boto3.client("s3")
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET)["Contents"]}
    assert "churn/registry.db" in keys
    for table in ("labels", "customer_profile", "customer_activity"):
        assert f"churn/data/{table}.parquet" in keys


def test_redis_holds_the_training_paths_values_and_keeps_them_across_a_restart(
    store: FeatureStoreConfig, redis: Redis
) -> None:
    ids = [FIRST_CUSTOMER_ID + i for i in range(0, CUSTOMERS, 7)]
    want = as_of_now(store, ids)
    got = online_features(store, ids).set_index(ENTITY_KEY).loc[ids, feature_names()]
    assert_same_values(got, want)
    assert int(redis.cli("DBSIZE")) >= CUSTOMERS  # one hash per customer
    # A new container over the same volume: the append-only file brings every value back.
    redis.cli("SHUTDOWN")  # flushes the append-only file before the container stops
    redis.remove()
    redis.start()
    again = online_features(store, ids).set_index(ENTITY_KEY).loc[ids, feature_names()]
    assert_same_values(again, want)


def test_the_feature_server_answers_from_the_object_store_repository(
    store: FeatureStoreConfig, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_FEATURE_ONLINE_STORE", store.online_store)
    ids = [FIRST_CUSTOMER_ID + i for i in (3, 10, 42)]
    want = as_of_now(store, ids)
    with feature_server(store, tmp_path) as url:
        served = online_rows(url, ids)
        # A key Redis holds no row for comes back PRESENT, null, at the epoch (Feast's Redis
        # store): the model server's lookup still reads it as an unknown customer (its 404).
        source = FeatureSource(url, feature_names())
        with pytest.raises(UnknownEntityError, match="7654321"):
            asyncio.run(source.fetch([7654321]))
        known = asyncio.run(FeatureSource(url, feature_names()).fetch([ids[0]]))
        assert set(known[ids[0]].values) == set(feature_names())
    assert_same_values(served, want)


def test_an_object_store_repository_without_redis_is_one_line_before_any_work(
    store: FeatureStoreConfig, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLOPS_FEATURE_ONLINE_STORE", raising=False)
    with pytest.raises(FeatureStoreError, match="MLOPS_FEATURE_ONLINE_STORE"):
        materialize_features(replace(store, online_store=""), datetime.now(UTC))
    cli = [*mlops_executable(), "features", "materialize", "--repo", store.repo_path]
    out = subprocess.run(cli, capture_output=True, text=True, timeout=120)
    lines = (out.stdout + out.stderr).strip().splitlines()
    assert out.returncode != 0 and len(lines) == 1, out
    assert lines[0].startswith("error:") and "MLOPS_FEATURE_ONLINE_STORE" in lines[0], lines
