"""KFP's database image with its two clients, as the cluster runs them, in Docker:
- the MLMD server image: real MariaDB, the real MLMD store (the ml-metadata wheel's C++ extension),
  reached over gRPC by MLMD's own Python client;
- the API server image: its schema set-up on MariaDB (it then waits for Kubernetes, which is the
  cluster tests' part), configured from the manifests' own ConfigMap and Secret.

Starts both containers on a private Docker network; the client runs inside the server's image,
which carries ml-metadata. Needs the images (`make kfp-images`); skips with that reason when they
are not built.
"""

from __future__ import annotations

import base64
import subprocess
import time
import uuid
from collections.abc import Iterator

import pytest

from tests.kfp.kfp_stack import local_images, missing_images, render

pytestmark = [pytest.mark.kfp, pytest.mark.docker]

CLIENT = r"""
import sys, time
from ml_metadata import errors
from ml_metadata.metadata_store import metadata_store
from ml_metadata.proto import metadata_store_pb2 as pb

store = metadata_store.MetadataStore(pb.MetadataStoreClientConfig(host=sys.argv[1], port=8080))
for _ in range(120):
    try:
        store.get_artifact_types()
        break
    except errors.UnavailableError:
        time.sleep(1)
model = store.put_artifact_type(pb.ArtifactType(name="system.Model", properties={"framework": pb.STRING}))
run = store.put_execution_type(pb.ExecutionType(name="system.ContainerExecution"))
[art] = store.put_artifacts([pb.Artifact(type_id=model, uri="s3://mlpipeline/registry/v1/model.skops")])
[exe] = store.put_executions([pb.Execution(type_id=run, last_known_state=pb.Execution.COMPLETE)])
store.put_events([pb.Event(artifact_id=art, execution_id=exe, type=pb.Event.OUTPUT)])
[ctx] = store.put_contexts([pb.Context(type_id=store.put_context_type(pb.ContextType(name="system.PipelineRun")), name="run-1")])
store.put_attributions_and_associations(
    [pb.Attribution(artifact_id=art, context_id=ctx)], [pb.Association(execution_id=exe, context_id=ctx)])
got = store.get_artifacts_by_context(ctx)
assert [a.uri for a in got] == ["s3://mlpipeline/registry/v1/model.skops"], got
assert store.get_events_by_execution_ids([exe])[0].artifact_id == art
try:
    store.get_artifact_type("no-such-type")
except errors.NotFoundError:
    print("not-found-ok")
print("ok", art, exe, ctx)
"""


def docker(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, check=check)


@pytest.fixture(scope="module")
def mlmd_on_mariadb() -> Iterator[tuple[str, str]]:
    missing = [
        t
        for t in missing_images()
        if any(f"/{n}:" in t for n in ("mariadb", "metadata-server", "api-server"))
    ]
    if missing:
        pytest.skip(f"KFP images not built ({', '.join(missing)}): run make kfp-images")
    images = {t.split("/")[1].split(":")[0]: t for t in local_images()}
    net = f"mlmd-test-{uuid.uuid4().hex[:8]}"
    docker("network", "create", net)
    db, server = f"{net}-db", f"{net}-server"
    try:
        # The arguments and user of KFP's mysql Deployment.
        docker(
            "run",
            "-d",
            "--name",
            db,
            "--network",
            net,
            "--network-alias",
            "mysql",
            "--user",
            "999",
            "--tmpfs",
            "/var/lib/mysql:uid=999",
            images["mariadb"],
            "--datadir",
            "/var/lib/mysql",
            "--authentication-policy=mysql_native_password",
            "--mysql-native-password=ON",
            "--disable-log-bin",
        )
        # The command and flags of KFP's metadata-grpc Deployment.
        docker(
            "run",
            "-d",
            "--name",
            server,
            "--network",
            net,
            images["metadata-server"],
            "--grpc_port=8080",
            "--mysql_config_database=metadb",
            "--mysql_config_host=mysql",
            "--mysql_config_port=3306",
            "--mysql_config_user=root",
            "--mysql_config_password=",
            "--enable_database_upgrade=true",
            "--grpc_channel_arguments=grpc.max_metadata_size=16384,grpc.max_receive_message_length=104857600",
        )
        yield net, images["metadata-server"]
    finally:
        for name in (server, db):
            logs = docker("logs", "--tail", "30", name, check=False)
            print(f"--- {name}\n{logs.stdout}{logs.stderr}")
            docker("rm", "-f", name, check=False)
        docker("network", "rm", net, check=False)


def test_mlmd_client_round_trip_through_the_server_on_mariadb(
    mlmd_on_mariadb: tuple[str, str],
) -> None:
    net, image = mlmd_on_mariadb
    # The client in its own container on the same network (MLMD's Python client is in that image).
    result = subprocess.run(
        [
            "docker",
            "run",
            "--rm",
            "--network",
            net,
            "--entrypoint",
            "/opt/mlmd/bin/python",
            image,
            "-c",
            CLIENT,
            f"{net}-server",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "not-found-ok" in result.stdout
    assert result.stdout.strip().splitlines()[-1].startswith("ok ")
    logs = docker("logs", f"{net}-server").stderr
    assert "store open: mysql" in logs
    # What the front covers: every MetadataStoreService call the extension has (49 of 52).
    assert (
        "serving 49 of 52 MetadataStoreService methods; unimplemented: GetParentContextsByContexts, "
        "GetChildrenContextsByContexts, GetLineageGraph"
    ) in logs


def install_config() -> dict[str, str]:
    """The API server's database settings, from the rendered pipeline-install-config and mysql-secret."""
    docs = {(d["kind"], d["metadata"]["name"]): d for d in render("local")}
    config = docs[("ConfigMap", "pipeline-install-config")]["data"]
    secret = docs[("Secret", "mysql-secret")]
    creds = secret.get("stringData") or {
        k: base64.b64decode(v).decode() for k, v in secret["data"].items()
    }
    return {
        "DBCONFIG_USER": creds["username"],
        "DBCONFIG_PASSWORD": creds["password"],
        "DBCONFIG_DBNAME": config["pipelineDb"],
        "DBCONFIG_HOST": config["mysqlHost"].split(".")[0],
        "DBCONFIG_PORT": config["mysqlPort"],
        "DB_DRIVER_NAME": config["dbType"],
        "DBCONFIG_CONMAXLIFETIME": config["ConMaxLifeTime"],
    }


def test_the_api_server_sets_up_its_schema_on_mariadb(mlmd_on_mariadb: tuple[str, str]) -> None:
    net, _ = mlmd_on_mariadb
    image = next(t for t in local_images() if "/api-server:" in t)
    env = install_config()
    assert env["DB_DRIVER_NAME"] == "mysql"
    name = f"{net}-api"
    args = [arg for key, value in env.items() for arg in ("-e", f"{key}={value}")]
    docker("run", "-d", "--name", name, "--network", net, *args, image)
    try:
        deadline = time.monotonic() + 240
        logs = ""
        while time.monotonic() < deadline and "DB client initialized successfully" not in logs:
            time.sleep(3)
            out = docker("logs", name, check=False)
            logs = out.stdout + out.stderr
        assert "DB client initialized successfully" in logs, logs[-3000:]
    finally:
        docker("rm", "-f", name, check=False)
