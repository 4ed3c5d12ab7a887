"""A Dask cluster for one pipeline step, through the dask-kubernetes operator's DaskCluster resource.

KFP v2 has no resource op, so the step creates the DaskCluster with the Kubernetes API (as the
step's own ServiceAccount, which manifests/base/dask-rbac.yaml lets create, read and delete them),
waits for the operator's scheduler to answer, and deletes the resource when it is done: on
success, on an error, and on SIGTERM (how Argo stops a terminated run's step).

SIGTERM reaches the step's whole process group: the shell KFP wraps the step in and its launcher
end at once, and the container with them, so the step's own delete can lose that race. Two
backstops: the operator deletes a cluster whose scheduler has been idle for `ORPHAN_IDLE_S`
(the DaskCluster's idleTimeout), and while the step lives it keeps its scheduler busy with a tiny
task every `HEARTBEAT_S`; a step that is gone stops, and its cluster goes a minute later. The
resource is also owned by the step's pod (KFP's launcher sets KFP_POD_NAME and KFP_POD_UID from
the downward API), so Kubernetes' garbage collector deletes it, and through the operator's own
ownerReferences its scheduler and workers, when that pod object is deleted.

Field names are the operator's CRD at the pinned version (dask-kubernetes, pyproject.toml), pinned
by tests/components/test_dask_kubecluster.py.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from components.compute_spec import ComputeError, ComputeSpec
from mlops_core.errors import MlopsError

GROUP = "kubernetes.dask.org"
VERSION = "v1"
PLURAL = "daskclusters"
KIND = "DaskCluster"
SCHEDULER_PORT = 8786  # the operator's scheduler Service port "tcp-comm"
# The operator's idle check asks the Service's port named "http-dashboard" first and skips the
# check when there is none (controller.py check_scheduler_idle, then the RPC on "tcp-comm").
DASHBOARD_PORT = 8787  # Dask's default dashboard address
ORPHAN_IDLE_S = 60  # a scheduler idle this long has lost its step: the operator deletes it
HEARTBEAT_S = 15.0  # the step's tiny task keeps its scheduler from looking idle
# The downward-API variables KFP's argo compiler gives every executor (common.go commonEnvs).
POD_NAME_ENV = "KFP_POD_NAME"
POD_UID_ENV = "KFP_POD_UID"
# The scheduler and workers run as this account (manifests/base/dask-rbac.yaml): no API rights.
SERVICE_ACCOUNT = "mlops-dask"
IMAGE_ENV = "MLOPS_DASK_IMAGE"  # the component image (it holds dask and this project)
# The object store for s3:// data on the workers: "<secret>/<access key field>/<secret key field>"
# of a Secret in the step's namespace (the pipeline sets it from its ObjectStore). The workers get
# the credentials from the Secret itself, so no key is written into the DaskCluster.
STORE_SECRET_ENV = "MLOPS_DASK_STORE_SECRET"
STORE_ENDPOINT_ENV = "AWS_ENDPOINT_URL"


class DaskClusterError(MlopsError):
    """The operator's Dask cluster did not come up in time, or could not be created."""


def owner_reference(pod_name: str, pod_uid: str) -> dict[str, Any]:
    """The step's pod as the DaskCluster's owner: deleted with the pod (background GC)."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "name": pod_name,
        "uid": pod_uid,
        "blockOwnerDeletion": False,  # the pod's own deletion never waits for the cluster
        "controller": False,
    }


def store_env(secret: str, endpoint: str) -> list[dict[str, Any]]:
    """The workers' object-store variables: the endpoint as a value, the keys by secretKeyRef."""
    env: list[dict[str, Any]] = []
    if endpoint:
        env.append({"name": STORE_ENDPOINT_ENV, "value": endpoint})
    if secret:
        name, access, key = secret.split("/")
        env += [
            {"name": var, "valueFrom": {"secretKeyRef": {"name": name, "key": field}}}
            for var, field in (("AWS_ACCESS_KEY_ID", access), ("AWS_SECRET_ACCESS_KEY", key))
        ]
    return env


def _resources(spec: ComputeSpec) -> dict[str, Any]:
    """Memory is requested and capped (a worker past it is OOM-killed, as Dask's own
    --memory-limit expects); CPU is only requested. A CPU limit throttles the workers' Python
    start and every task to that share even on an idle node: two workers limited to 0.1 CPU took
    5 minutes to train 5,000 rows on kind."""
    memory = str(spec.memory_bytes())
    return {
        "requests": {"cpu": str(spec.worker_cpu), "memory": memory},
        "limits": {"memory": memory},
    }


def daskcluster_body(
    name: str,
    *,
    image: str,
    spec: ComputeSpec,
    owner: dict[str, Any] | None,
    env: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The DaskCluster resource: one scheduler and `spec.workers` workers of the given size."""
    labels = {"app.kubernetes.io/part-of": "mlops-platform", "mlops.dev/compute": "dask"}
    metadata: dict[str, Any] = {"name": name, "labels": labels}
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    worker_args = [
        "dask",
        "worker",
        "--name",
        "$(DASK_WORKER_NAME)",
        "--nthreads",
        str(spec.threads_per_worker()),
        "--memory-limit",
        str(spec.memory_bytes()),
    ]
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": metadata,
        "spec": {
            "idleTimeout": ORPHAN_IDLE_S,
            "worker": {
                "replicas": spec.workers,
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "containers": [
                        {
                            "name": "worker",
                            "image": image,
                            "args": worker_args,
                            "env": env or [],
                            "resources": _resources(spec),
                        }
                    ],
                },
            },
            "scheduler": {
                "spec": {
                    "serviceAccountName": SERVICE_ACCOUNT,
                    "containers": [
                        {
                            "name": "scheduler",
                            "image": image,
                            "args": ["dask", "scheduler", "--host", "0.0.0.0"],
                            "ports": [
                                {"name": "tcp-comm", "containerPort": SCHEDULER_PORT},
                                {"name": "http-dashboard", "containerPort": DASHBOARD_PORT},
                            ],
                        }
                    ],
                },
                "service": {
                    "type": "ClusterIP",
                    "selector": {
                        "dask.org/cluster-name": name,
                        "dask.org/component": "scheduler",
                    },
                    "ports": [
                        {
                            "name": "tcp-comm",
                            "protocol": "TCP",
                            "port": SCHEDULER_PORT,
                            "targetPort": "tcp-comm",
                        },
                        {
                            "name": "http-dashboard",
                            "protocol": "TCP",
                            "port": DASHBOARD_PORT,
                            "targetPort": "http-dashboard",
                        },
                    ],
                },
            },
        },
    }


def scheduler_address(name: str, namespace: str, domain: str = "cluster.local") -> str:
    """The operator names the scheduler's Service `<cluster>-scheduler`; the name is whole, in the
    cluster's DNS domain, so a name the cluster's DNS does not know yet is never looked up
    outside the cluster through the resolver's search list."""
    return f"tcp://{name}-scheduler.{namespace}.svc.{domain}:{SCHEDULER_PORT}"


def cluster_domain(resolv_conf: str = "/etc/resolv.conf") -> str:
    """The cluster's DNS domain, from the pod's search list (`<namespace>.svc.<domain>` first)."""
    with contextlib.suppress(OSError):
        for line in Path(resolv_conf).read_text().splitlines():
            fields = line.split()
            if fields[:1] == ["search"]:
                for entry in fields[1:]:
                    if entry.startswith("svc."):
                        return entry.removeprefix("svc.")
    return "cluster.local"


def _namespace() -> str:
    path = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"
    try:
        with open(path) as fh:
            return fh.read().strip()
    except OSError as e:
        raise DaskClusterError(f"cannot read this pod's namespace from {path}: {e}") from e


def _owner_from_env() -> dict[str, Any] | None:
    name, uid = os.environ.get(POD_NAME_ENV, ""), os.environ.get(POD_UID_ENV, "")
    return owner_reference(name, uid) if name and uid else None


@contextlib.contextmanager
def kube_dask_client(spec: ComputeSpec) -> Iterator[object]:
    """Create the DaskCluster, yield a Client to its scheduler, delete it whatever happens."""
    from kubernetes import client as k8s

    from components.kube_client import load_api_client

    image = os.environ.get(IMAGE_ENV, "")
    if not image:
        raise ComputeError(
            f"compute=dask in a pod needs {IMAGE_ENV} (the component image for the workers)"
        )
    namespace = _namespace()
    name = f"mlops-dask-{uuid.uuid4().hex[:8]}"
    api = k8s.CustomObjectsApi(load_api_client())
    env = store_env(os.environ.get(STORE_SECRET_ENV, ""), os.environ.get(STORE_ENDPOINT_ENV, ""))
    body = daskcluster_body(name, image=image, spec=spec, owner=_owner_from_env(), env=env)
    # Its own client: SIGTERM's handler may run while `api` is in the middle of a call.
    cleanup = k8s.CustomObjectsApi(load_api_client())

    def delete() -> None:
        with contextlib.suppress(k8s.ApiException):  # already gone: the goal
            cleanup.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)

    with _sigterm_unwinds(first=delete):
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
        try:
            deadline = time.monotonic() + spec.start_timeout_s
            _wait_created(api, namespace, name, deadline)
            dask = _connect(scheduler_address(name, namespace, cluster_domain()), deadline)
            try:
                with keep_busy(dask, HEARTBEAT_S):
                    dask.wait_for_workers(
                        spec.workers, timeout=max(1.0, deadline - time.monotonic())
                    )
                    yield dask
            finally:
                dask.close()
        finally:
            delete()


def _beat() -> float:
    return time.time()


@contextlib.contextmanager
def keep_busy(dask: Any, every_s: float) -> Iterator[None]:
    """A tiny task on the scheduler every `every_s` while the block runs: each changes its
    transitions, so it never looks idle to the operator while this step lives (before any worker
    joined, the waiting task keeps it busy the same way)."""
    stop = threading.Event()

    def beat() -> None:
        pending = None
        while not stop.is_set():
            if pending is None or pending.done():
                with contextlib.suppress(Exception):  # a closing client: the block is ending
                    pending = dask.submit(_beat, pure=False)
            stop.wait(every_s)

    thread = threading.Thread(target=beat, name="dask-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


@contextlib.contextmanager
def _sigterm_unwinds(first: Callable[[], None] | None = None) -> Iterator[None]:
    """SIGTERM (how Argo stops the step of a terminated run) runs `first` at once (the delete,
    before the container goes), then raises SystemExit here, so the block unwinds. Python's
    default ends the process at once, and the ownerReference alone waits for the step's pod
    object, which KFP keeps after it ends."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread
        return

    def stop(signum: int, _frame: object) -> None:
        if first is not None:
            first()
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _wait_created(api: Any, namespace: str, name: str, deadline: float) -> None:
    """Until the operator has made the scheduler and its Service: it then sets the phase Pending,
    and Running once the Service reports a status. Either will do; the two handlers race at the
    pinned version, and a cluster can stay Pending while it serves."""
    phase = "(none yet)"
    while time.monotonic() < deadline:
        status = api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        phase = status.get("status", {}).get("phase", phase)
        if phase in {"Pending", "Running"}:
            return
        if phase == "Error":
            break
        time.sleep(1)
    raise DaskClusterError(
        f"the DaskCluster {namespace}/{name} is {phase}: the operator made no scheduler; check "
        "that the dask-kubernetes operator runs in the cluster (kubectl get deploy -n kubeflow "
        "mlops-dask-operator) and its log"
    )


def _connect(address: str, deadline: float) -> Any:
    """A Client once the scheduler behind its Service answers (the operator starts it)."""
    from distributed import Client

    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            return Client(address, timeout=min(30.0, max(1.0, deadline - time.monotonic())))
        except (OSError, MemoryError) as e:
            # OSError: not resolvable or listening yet. MemoryError: something other than the
            # scheduler answered, its reply read as a frame length ("HTTP/1.1": 3 EiB). Seen on
            # kind: until kube-proxy programs a new Service's ClusterIP, packets to it follow the
            # node's default route, and a transparent proxy on that network answered them.
            last = e
            print(
                f"dask: {address} not ready ({type(e).__name__}: {e}); {_peer(address)}", flush=True
            )
            time.sleep(2)
    raise DaskClusterError(
        f"the Dask scheduler at {address} did not answer in time (last error: "
        f"{last}); check that the dask-kubernetes operator runs in the cluster"
    ) from last


def _peer(address: str) -> str:
    """What answers at the address: its IP and the first bytes it sends (for the step's log)."""
    import socket

    host, port = address.removeprefix("tcp://").rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=3) as sock:
            sock.settimeout(3)
            peer = sock.getpeername()
            sock.sendall(b"\0" * 8)
            return f"{peer} sent {sock.recv(32)!r}"
    except OSError as e:
        return f"probe: {e}"
