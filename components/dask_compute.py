"""Where a step's heavy work runs: `local` (this process) or `dask` (a cluster started for the step).

`dask_client(spec)` starts the cluster, hands a `distributed.Client` to the step and always takes
the cluster down, on success, on an exception and on a timeout alike. Outside a pod it is a
`distributed.LocalCluster` of worker processes, each with its memory limit. In a pod it is a
DaskCluster custom resource for the dask-kubernetes operator (`components.dask_kubecluster`),
deleted at the end (a terminated run's SIGTERM included); its ownerReference to the step's pod lets
Kubernetes delete it with that pod even when the step was killed before it could.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from components.compute_spec import ComputeError, ComputeSpec
from components.kube_client import in_a_pod

__all__ = ["ComputeError", "ComputeSpec", "dask_client", "local_dask_client", "workers_uri"]


@contextlib.contextmanager
def dask_client(spec: ComputeSpec) -> Iterator[object]:
    """A `distributed.Client` on a cluster started for this block, closed when it ends."""
    if in_a_pod():
        from components.dask_kubecluster import kube_dask_client

        with kube_dask_client(spec) as client:
            yield client
        return
    with local_dask_client(spec) as client:
        yield client


@contextlib.contextmanager
def local_dask_client(spec: ComputeSpec) -> Iterator[object]:
    """A LocalCluster of `spec.workers` processes, each limited to `spec.worker_memory`."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(
        n_workers=spec.workers,
        threads_per_worker=spec.threads_per_worker(),
        processes=True,
        memory_limit=spec.memory_bytes(),
        dashboard_address=None,  # no port to collide with another run's
        silence_logs=40,  # logging.ERROR: the step's own output stays readable
    )
    try:
        client = Client(cluster)
        try:
            yield client
        finally:
            client.close()
    finally:
        cluster.close()


def workers_uri(uri: str, path: str) -> str:
    """Where Dask workers read a KFP input artifact. In a pod the launcher downloaded it to `path`,
    on that pod only: the workers read the artifact's own object-store URI instead (KFP names its
    pipeline root minio://, an S3 bucket; the workers get the store's endpoint and keys). Outside
    a pod (kfp.local) the workers share this machine's files."""
    if in_a_pod() and uri.startswith(("minio://", "s3://")):
        return "s3://" + uri.split("://", 1)[1]
    return path
