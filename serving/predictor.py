"""The KServe predictor: one registered model version behind V1, V2 (Open Inference Protocol) and
V1 `:explain`.

`kserve.ModelServer` owns the HTTP routes, decoding and error mapping; this class owns what happens
between a decoded body and a response: schema checks (`RequestValidator`), the model's
`predict_proba` (`components.fast_inference`'s compiled path, or the Pipeline), the version and
request id in the body, per-row statistics and the observers. A request runs as named stages:
complete (rows by entity key: online features, per protocol) -> validate (per protocol) -> predict
(micro-batched) -> respond (per protocol).

A request by key gets back the values it was scored with: V1 as the body's `features_used`, V2 as
an output tensor of that name (BYTES, one JSON object per row). Not in the V2 response's
`parameters`: the Open Inference Protocol allows only a string, number or boolean per parameter
(REST and gRPC alike), and outputs are where the protocol puts per-row data.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
import orjson
from kserve import Model
from kserve.protocol.infer_type import InferInput, InferOutput, InferRequest, InferResponse

from components.fast_inference import ModelFunction, fast_model
from mlops_core.settings import DEFAULT_DECISION_THRESHOLD
from serving.explanation import Explainer, ExplainerUnavailable
from serving.feature_lookup import FeatureSource
from serving.metrics import MODEL_CREATED, RequestMetrics, prediction_statistics
from serving.micro_batcher import MicroBatcher
from serving.model_bundle import ModelBundle
from serving.prediction_observer import PredictionObserver, is_shadow_request
from serving.request_validation import RequestLimits, RequestValidator, v2_datatype
from serving.task_outputs import TaskOutputs

logger = logging.getLogger(__name__)

FEATURES_USED = "features_used"  # V1 field and V2 output: each row's key and scored values
Used = list[dict[str, Any]]  # per row: the entity key and every value the row was scored with


@dataclass(frozen=True)
class _Protocol:
    """One wire protocol's stages: the decoded body -> the body with rows by key completed from
    the feature store (and the values used, or None) -> validated rows; predictions -> response."""

    complete: Callable[[FeatureSource, Any], Awaitable[tuple[Any, Used | None]]]
    validate: Callable[[Any], np.ndarray]
    respond: Callable[[np.ndarray, str, Used | None], Any]


class ChurnPredictor(Model):
    """Serves a scikit-learn Pipeline from a `ModelBundle` (any schema and task, not only churn)."""

    def __init__(
        self,
        name: str,
        bundle: ModelBundle,
        *,
        limits: RequestLimits | None = None,
        threshold: float = DEFAULT_DECISION_THRESHOLD,
        observers: Sequence[PredictionObserver] = (),
        batch_rows: int = 256,
        fast_path: bool = True,
        feature_source: FeatureSource | None = None,
    ) -> None:
        super().__init__(name)
        # Rows that carry only the entity key (V1 and V2) get their features from here, before
        # validation.
        self.feature_source = feature_source
        self.bundle = bundle
        self.version = bundle.version
        self.limits = limits or RequestLimits()
        self.threshold = threshold
        self.observers = list(observers)
        self.validator = RequestValidator(bundle.schema, self.limits)
        self.request_metrics = RequestMetrics(name, self.version)
        self.explainer: Explainer | None = None
        self.explain_unavailable = ""
        self.fast_path = fast_path
        self.model: ModelFunction = bundle.pipeline
        # The task's outputs in the user's labels (binary, multiclass, regression).
        self.outputs = TaskOutputs(bundle.schema, threshold=threshold)
        # Requests are merged only up to `batch_rows`: past a few hundred rows the per-call cost is
        # already amortised, and bigger batches only make every request in them wait longer.
        self.batcher = MicroBatcher(self.predict_rows, max_rows=batch_rows)
        # The protocol is decided once per request; each one is its validate and respond stages.
        self._v1 = _Protocol(self._complete_v1, self.validator.from_v1, self._respond_v1)
        self._v2 = _Protocol(self._complete_v2, self.validator.from_v2, self._respond_v2)

    def stop(self) -> None:
        self.batcher.close()
        super().stop()

    def load(self) -> bool:
        estimator = self.bundle.pipeline[-1]
        # One thread per inference: requests run concurrently, so threads inside one prediction
        # only add contention (and latency) on a small pod.
        if "n_jobs" in estimator.get_params():
            estimator.set_params(n_jobs=1)
        # The compiled preprocessing + the estimator's own call, or the Pipeline (logged) when the
        # model cannot be compiled; either way the same outputs to 1e-6.
        if self.fast_path:
            self.model = fast_model(self.bundle.pipeline, self.bundle.schema)
        else:
            logger.info("fast inference path off (MLOPS_FAST_PATH=false): the Pipeline serves")
        self.stats = prediction_statistics(
            self.name, self.version, self.bundle.schema, reference=self.bundle.reference
        )
        MODEL_CREATED.labels(self.name, self.version).set(
            datetime.fromisoformat(self.bundle.record.created_at).timestamp()
        )
        try:
            self.explainer = Explainer(
                self.bundle.pipeline, self.bundle.schema, self.bundle.reference
            )
        except ExplainerUnavailable as e:
            self.explain_unavailable = str(e)
            logger.warning("explain is unavailable for %s v%s: %s", self.name, self.version, e)
        self.ready = True
        return self.ready

    # --- the model -----------------------------------------------------------------------------
    def predict_rows(self, rows: np.ndarray) -> np.ndarray:
        """The model's output for validated rows (the only call into the model): positive-class
        probabilities, class probabilities or values, per task."""
        return self.outputs.predict(self.model, rows)

    def _after_prediction(
        self,
        rows: np.ndarray,
        probabilities: np.ndarray,
        request_id: str,
        features_used: list[dict[str, Any]] | None = None,
    ) -> None:
        self.request_metrics.rows(rows.shape[0])
        self.stats.update(rows, probabilities)
        for observer in self.observers:
            try:
                observer.observe(
                    rows, probabilities, request_id, self.version, features_used=features_used
                )
            except Exception:  # an observer must never fail a prediction
                logger.exception("prediction observer %r failed", observer)

    @staticmethod
    def _request_id(headers: dict[str, str] | None) -> str:
        return (headers or {}).get("x-request-id") or uuid.uuid4().hex

    # --- KServe handlers -----------------------------------------------------------------------
    async def predict(
        self, payload: dict[str, Any] | InferRequest, headers: dict[str, str] | None = None
    ) -> dict[str, Any] | InferResponse:
        """decode (protocol) -> complete (online features) -> validate (schema) -> predict
        (batched) -> respond (protocol)."""
        request_id = self._request_id(headers)
        protocol, body = (
            (self._v2, payload.inputs) if isinstance(payload, InferRequest) else (self._v1, payload)
        )
        used = None
        if self.feature_source is not None:
            body, used = await protocol.complete(self.feature_source, body)
        rows = protocol.validate(body)
        outputs = await self.batcher.predict(rows)
        if not is_shadow_request(headers):
            self._after_prediction(rows, self.outputs.scores(outputs), request_id, used)
        return protocol.respond(outputs, request_id, used)

    async def _complete_v1(self, source: FeatureSource, body: Any) -> tuple[Any, Used | None]:
        return await source.complete_v1(body, max_rows=self.limits.max_rows)

    async def _complete_v2(
        self, source: FeatureSource, inputs: list[InferInput]
    ) -> tuple[list[InferInput], Used | None]:
        """The inputs with a tensor for each feature the request lacks, by the entity key tensor
        (which is taken out); a request without one is returned as it came."""
        rows = self.validator.v2_keyed_rows(inputs, source.entity_key)
        if rows is None:
            return inputs, None
        completed, used = await source.complete_rows(rows)
        sent = {i.name: i for i in inputs if i.name != source.entity_key}
        if used is None:  # every feature came with the key: nothing was looked up
            return list(sent.values()), None
        # Looked-up values travel as the store holds them (numbers as doubles); the values sent
        # keep their tensors, so `from_v2` checks both the way it checks any V2 request.
        return [
            sent[f.name]
            if f.name in sent
            else InferInput(
                f.name,
                [len(completed)],
                "FP64" if f.is_numeric else "BYTES",
                [row[f.name] for row in completed],
            )
            for f in self.bundle.schema.features
        ], used

    def _respond_v2(self, outputs: np.ndarray, request_id: str, used: Used | None) -> InferResponse:
        infer_outputs = self.outputs.v2_outputs(outputs)
        if used is not None:
            # JSON per row: KServe's JSON encoding turns a null in a BYTES tensor into "None".
            rows = [orjson.dumps(row).decode() for row in used]
            infer_outputs.append(InferOutput(FEATURES_USED, [len(rows)], "BYTES", rows))
        return InferResponse(
            response_id=request_id,
            model_name=self.name,
            model_version=self.version,
            parameters={"request_id": request_id},
            infer_outputs=infer_outputs,
        )

    def _respond_v1(
        self, outputs: np.ndarray, request_id: str, used: Used | None
    ) -> dict[str, Any]:
        response = {
            "predictions": self.outputs.v1_predictions(outputs),
            "model_name": self.name,
            "model_version": self.version,
            "request_id": request_id,
        }
        if used is not None:
            response[FEATURES_USED] = used  # the values each row was scored with
        return response

    async def explain(
        self, payload: dict[str, Any], headers: dict[str, str] | None = None
    ) -> dict[str, Any]:
        if self.explainer is None:
            raise NotImplementedError(
                f"explain is unavailable for this model: {self.explain_unavailable}"
            )
        request_id = self._request_id(headers)
        used = None
        if self.feature_source is not None:  # rows by entity key, as for predict
            payload, used = await self.feature_source.complete_v1(
                payload, max_rows=self.limits.max_rows
            )
        rows = self.validator.from_v1(payload)
        explainer = self.explainer
        outputs, exp = await self.batcher.run_in_model_thread(
            lambda: (self.predict_rows(rows), explainer.explain(rows))
        )
        names = self.bundle.schema.feature_names
        response = {
            "explanations": self.outputs.v1_explanations(outputs, exp, names),
            "method": exp.method,
            "units": self.outputs.explanation_units,
            "model_name": self.name,
            "model_version": self.version,
            "request_id": request_id,
        }
        if used is not None:
            response[FEATURES_USED] = used
        return response

    # --- V2 metadata ---------------------------------------------------------------------------
    def get_input_types(self) -> list[dict[str, Any]]:
        return [
            {"name": f.name, "datatype": v2_datatype(f), "shape": [-1]}
            for f in self.bundle.schema.features
        ]

    def get_output_types(self) -> list[dict[str, Any]]:
        return self.outputs.output_types()
