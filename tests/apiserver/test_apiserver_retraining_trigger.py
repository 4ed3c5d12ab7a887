"""The cluster retraining trigger (mlops_control/retraining/cluster_trigger.py) firing, with real
processes: a real model server whose drift monitor judges its own traffic, the real Prometheus the
tests build scraping it (with the `namespace` label the cluster's relabelling adds), and the
controller as its Deployment runs it (`mlops canary controller --kfp-host ...`, a separate process
authenticated with its own ServiceAccount's token against the real kube-apiserver, so its Role is
what lets it write the Event and the annotation).

Traffic like the training data first (judged "idle"), then drifted traffic (charges x2.5): the
trigger must wait for `min_evaluations` drifting evaluations over `sustain_s` (debounce), start
exactly one run through `kfp.Client`, and then stay in its cool-down while the drift goes on.

The KFP end is a local HTTP server answering the v2beta1 REST paths `kfp.Client` calls
(tests/apiserver/kfp_api_standin.py reads them from the installed `kfp_server_api`) and recording
each request: there is no KFP API server outside the kind cluster. The real-KFP path (the same
`KfpRunLauncher` against the KFP API server in the cluster) is tests/kfp/test_kfp_api.py's.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import threading
import time
import uuid
from pathlib import Path

import httpx
import numpy as np
import pytest
import yaml
from kubernetes import client

from components.deploy import deploy_model
from components.inference_service import GROUP, PLURAL, VERSION, InferenceServiceSpec
from components.isvc_traffic import TrafficStateError
from mlops_control.retraining.cluster_trigger import (
    LAST_RETRAINING,
    RETRAINING_ANNOTATION,
    RetrainingWatch,
)
from mlops_control.retraining.trigger import LaunchedRun, RetrainingRequest
from mlops_control.traffic.isvc_changes import Change, KubernetesChanges
from mlops_control.traffic.model_server_process import ModelServerProcess, mlops_executable
from mlops_core.registry import ModelRegistry
from mlops_demo.train_and_register import train_and_register
from serving.monitoring.drift_monitor import DriftSnapshot
from serving.v1_instances import v1_instances
from tests.apiserver.canary_harness import MODEL, prometheus_scraping
from tests.apiserver.control_plane import service_account_api
from tests.apiserver.kfp_api_standin import CREATE_RUN, kfp_api_standin
from tests.drifted_traffic import churn_features, raise_charges

pytestmark = [pytest.mark.apiserver, pytest.mark.slow]
CONTROLLER_ACCOUNT = "mlops-canary-controller"
# A small drift window judged every second, so the test sees many evaluations in a minute.
DRIFT_ENV = {
    "MLOPS_MONITOR_PANE_ROWS": "200",
    "MLOPS_MONITOR_PANES": "5",
    "MLOPS_MONITOR_MIN_ROWS": "1000",
    "MLOPS_MONITOR_INTERVAL_S": "1",
}
POLICY = {"min_evaluations": 3, "sustain_s": 2, "cooldown_s": 3600}


class Traffic:
    """Sends rows to the server until stopped; `drifted` switches to shifted charges."""

    def __init__(self, url: str) -> None:
        df = churn_features(4000)
        self.pools = {False: v1_instances(df), True: v1_instances(raise_charges(df))}
        self.drifted = False
        self.endpoint = f"{url}/v1/models/{MODEL}:predict"
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        rng = np.random.default_rng(3)
        with httpx.Client(timeout=30) as http:
            while not self.stop.is_set():
                pool = self.pools[self.drifted]
                idx = rng.integers(0, len(pool), 20)
                r = http.post(self.endpoint, json={"instances": [pool[i] for i in idx]})
                if r.status_code != 200:
                    self.failures.append(f"{r.status_code} {r.text[:200]}")
                time.sleep(0.05)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=60)


def _kubeconfig(api: client.ApiClient, path: Path) -> Path:
    """A kubeconfig carrying the ServiceAccount's token (what the pod's mounted token gives)."""
    cfg = api.configuration
    token = cfg.api_key["authorization"]
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [
                    {
                        "name": "t",
                        "cluster": {"server": cfg.host, "certificate-authority": cfg.ssl_ca_cert},
                    }
                ],
                "users": [{"name": CONTROLLER_ACCOUNT, "user": {"token": token}}],
                "contexts": [
                    {"name": "t", "context": {"cluster": "t", "user": CONTROLLER_ACCOUNT}}
                ],
                "current-context": "t",
            }
        )
    )
    path.chmod(0o600)
    return path


def _decisions(log: Path, name: str) -> list[tuple[str, str]]:
    """(action, line) of each retraining log line the controller wrote for `name`."""
    pattern = re.compile(rf"retraining [\w-]+/{name} v\d+: (\w+) ")
    text = log.read_text(errors="replace") if log.exists() else ""
    return [(m.group(1), line) for line in text.splitlines() if (m := pattern.search(line))]


def _wait_for(predicate, timeout_s: float, what: str, log: Path):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        got = predicate()
        if got:
            return got
        time.sleep(0.5)
    tail = log.read_text(errors="replace")[-3000:] if log.exists() else ""
    raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}; log:\n{tail}")


def test_sustained_drift_in_prometheus_starts_one_kfp_run_then_cools_down(
    admin_api, control_plane, project_base, tmp_path
):
    ns, name = project_base, f"churn-{uuid.uuid4().hex[:8]}"
    registry = ModelRegistry(str(tmp_path / "registry"))
    version = train_and_register(registry, MODEL, rows=6000, seed=1, estimator="xgboost")
    server = ModelServerProcess.spawn(
        MODEL, str(version), registry.uri, tmp_path / "logs", DRIFT_ENV
    )
    try:
        asyncio.run(server.wait_ready())
        deploy_model(
            InferenceServiceSpec(
                name=name,
                namespace=ns,
                image="mlops-platform/serving:test",
                storage_uri=registry.version_uri(MODEL, version),
                model_name=MODEL,
                model_version=str(version),
            ),
            api_client=admin_api,
        )
        # What `kubectl annotate isvc NAME mlops.platform/retraining-policy=...` sends.
        client.CustomObjectsApi(admin_api).patch_namespaced_custom_object(
            GROUP, VERSION, ns, PLURAL, name,
            {"metadata": {"annotations": {RETRAINING_ANNOTATION: json.dumps(POLICY)}}},
        )  # fmt: skip
        account = service_account_api(control_plane, admin_api, ns, CONTROLLER_ACCOUNT)
        kubeconfig = _kubeconfig(account, tmp_path / "controller.kubeconfig")
        log = tmp_path / "controller.log"
        with (
            prometheus_scraping([server.url], tmp_path, labels={"namespace": ns}) as prometheus,
            kfp_api_standin() as kfp,
            Traffic(server.url) as traffic,
            log.open("wb") as out,
        ):
            env = {**os.environ, "KUBECONFIG": str(kubeconfig), "MLOPS_REGISTRY_URI": registry.uri}
            env.pop("KUBERNETES_SERVICE_HOST", None)  # the kubeconfig, not a pod's account
            controller = subprocess.Popen(
                [*mlops_executable(), "canary", "controller", "--namespace", ns,
                 "--prometheus", prometheus, "--kfp-host", kfp.url, "--resync", "1",
                 "--identity", "retraining-test"],
                env=env, stdout=out, stderr=subprocess.STDOUT,
            )  # fmt: skip
            try:
                # Training-like traffic: evaluations are judged and nothing starts.
                _wait_for(
                    lambda: [a for a, _ in _decisions(log, name)].count("idle") >= 2,
                    240,
                    "two evaluations of undrifted traffic",
                    log,
                )
                assert kfp.runs == [] and "fired" not in dict(_decisions(log, name))
                traffic.drifted = True
                _wait_for(lambda: kfp.runs, 240, "the KFP run", log)
                # The drift goes on: the next evaluations are in the cool-down, no second run.
                _wait_for(
                    lambda: [a for a, _ in _decisions(log, name)].count("cooldown") >= 3,
                    120,
                    "three evaluations in the cool-down",
                    log,
                )
            finally:
                controller.terminate()
                controller.wait(timeout=30)
        assert traffic.failures == []
    finally:
        server.stop()

    actions = [a for a, _ in _decisions(log, name)]
    fired_at = actions.index("fired")
    # Debounce: the first drifting evaluations only started a streak (min_evaluations 3).
    assert actions[:fired_at].count("pending") >= POLICY["min_evaluations"] - 1, actions
    assert actions.count("fired") == 1 and set(actions[fired_at + 1 :]) == {"cooldown"}, actions
    fired_line = _decisions(log, name)[fired_at][1]
    # The log line carries the drift figures: the share, the window and the drifted features' PSI.
    assert re.search(r"share drifted 0\.\d\d over \d+ rows \(.*monthly_charges PSI \d", fired_line)

    # Exactly one run, made by kfp.Client at the v2beta1 path, for this model, without caching.
    runs = [r for r in kfp.requests if (r.method, r.path) == CREATE_RUN]
    assert len(runs) == 1 and len(kfp.runs) == 1 and kfp.unknown == []
    run = kfp.runs[0]
    assert run["display_name"].startswith(f"retrain-{MODEL}-trg-")
    assert run["runtime_config"]["parameters"]["model_name"] == MODEL
    assert run["runtime_config"]["parameters"]["registry_uri"] == registry.uri
    # With a platform spec (the golden YAML's Kubernetes secrets) kfp.Client nests the two.
    spec = run["pipeline_spec"]
    assert spec.get("pipeline_spec", spec)["pipelineInfo"]["name"]

    # The decision is an Event on the InferenceService with the same figures ...
    events = (
        client.CoreV1Api(admin_api)
        .list_namespaced_event(ns, field_selector=f"involvedObject.name={name}")
        .items
    )
    triggered = [e for e in events if e.reason == "RetrainingTriggered"]
    assert len(triggered) == 1 and triggered[0].type == "Normal", [e.reason for e in events]
    message = triggered[0].message
    assert message.startswith(f"KFP run {run['run_id']} started: drift sustained")
    assert "share drifted" in message and "monthly_charges PSI" in message
    # ... and the cool-down's start is on the object, where a restarted controller reads it.
    isvc = client.CustomObjectsApi(admin_api).get_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, name
    )
    last = json.loads(isvc["metadata"]["annotations"][LAST_RETRAINING])
    assert last["run_id"] == run["run_id"] and last["id"] in run["display_name"]


class _ChangingLauncher:
    """Starts a "run" and, while doing so, writes to the InferenceService as the rollout or
    KServe's status update does between the watch's read and its record (seen on kind: the run
    started and its record and Event were lost to the stale resourceVersion)."""

    def __init__(self, api: client.ApiClient, name: str, ns: str) -> None:
        self.api, self.name, self.ns = api, name, ns

    def launch(self, request: RetrainingRequest) -> LaunchedRun:
        client.CustomObjectsApi(self.api).patch_namespaced_custom_object(
            GROUP, VERSION, self.ns, PLURAL, self.name,
            {"metadata": {"annotations": {"example.com/written-meanwhile": "yes"}}},
        )  # fmt: skip
        return LaunchedRun(run_id="run-1", run_name=f"retrain-{request.model}")


class _Drifting:
    """Prometheus's answer for a version whose every feature drifted, one evaluation per read."""

    def __init__(self) -> None:
        self.at = time.time()

    def read(self, model: str, version: str) -> DriftSnapshot:
        self.at += 5
        return DriftSnapshot(
            at=self.at, model=model, version=version, rows=1000, share_drifted=1.0,
            psi={"age": 0.9}, effect={"age": 0.5}, drifted={"age": True},
        )  # fmt: skip

    def quality(self, model: str, version: str) -> None:
        return None


def test_a_started_run_is_recorded_on_an_object_changed_since_the_read(
    admin_api, project_base, tmp_path
):
    ns, name = project_base, f"churn-{uuid.uuid4().hex[:8]}"
    deploy_model(
        InferenceServiceSpec(
            name=name, namespace=ns, image="mlops-platform/serving:test",
            storage_uri="s3://models/churn/1", model_name=MODEL, model_version="1",
        ),
        api_client=admin_api,
    )  # fmt: skip
    objects = client.CustomObjectsApi(admin_api)
    objects.patch_namespaced_custom_object(
        GROUP, VERSION, ns, PLURAL, name,
        {"metadata": {"annotations": {RETRAINING_ANNOTATION: '{"min_evaluations": 1, "sustain_s": 0}'}}},
    )  # fmt: skip
    changes = KubernetesChanges(admin_api)
    watch = RetrainingWatch(_Drifting(), _ChangingLauncher(admin_api, name, ns), changes)  # type: ignore[arg-type]
    read = objects.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    assert watch.reconcile(read, MODEL) == "fired"

    now = objects.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, name)
    ann = now["metadata"]["annotations"]
    assert json.loads(ann[LAST_RETRAINING])["run_id"] == "run-1"
    assert ann["example.com/written-meanwhile"] == "yes"  # the other write is kept
    events = client.CoreV1Api(admin_api).list_namespaced_event(
        ns, field_selector=f"involvedObject.name={name},reason=RetrainingTriggered"
    )
    assert [e.message.split(":")[0] for e in events.items] == ["KFP run run-1 started"]
    # A decision on the stale object is still refused: only the record of a fact is unguarded.
    with pytest.raises(TrafficStateError):
        changes.apply(read, Change(annotations={"example.com/decided": "stale"}))
