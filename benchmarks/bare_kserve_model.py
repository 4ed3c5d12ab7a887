"""The floor of the HTTP stack for `make bench-serving`: a bare `kserve.Model` calling the booster.

V2 only: one input tensor per feature -> columns -> the compiled preprocessing -> XGBoost's
`inplace_predict`. No schema checks, metrics, observers or micro-batching: what is left is KServe's
own HTTP, decoding and response encoding, i.e. the least any KServe predictor of this model costs.

    python benchmarks/bare_kserve_model.py --registry DIR --port N
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--registry", required=True)
    ap.add_argument("--model", default="churn")
    ap.add_argument("--port", type=int, required=True)
    args = ap.parse_args()
    sys.argv = sys.argv[:1]  # kserve.model_server parses sys.argv at import time

    from kserve import Model, ModelServer
    from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse

    from components.fast_inference import compile_pipeline
    from serving.model_bundle import load_registered

    bundle = load_registered(args.registry, args.model, "champion")
    bundle.pipeline[-1].set_params(n_jobs=1)
    compiled = compile_pipeline(bundle.pipeline)
    kinds = [(f.name, np.float64 if f.is_numeric else object) for f in bundle.schema.features]

    class BareBooster(Model):
        def load(self) -> bool:
            self.ready = True
            return True

        async def predict(self, payload: InferRequest, headers: Any = None) -> InferResponse:
            by_name = {i.name: i.data for i in payload.inputs}
            columns = [np.asarray(by_name[n], dtype=t) for n, t in kinds]  # None -> NaN
            p = compiled.predict_proba_columns(columns)[:, 1]
            n = len(p)
            return InferResponse(
                response_id=payload.id or "",
                model_name=self.name,
                infer_outputs=[InferOutput("probability", [n], "FP64", p.tolist())],
            )

    logging.getLogger("uvicorn.access").setLevel(logging.WARNING)
    logging.getLogger("kserve.trace").setLevel(logging.WARNING)
    model = BareBooster(args.model)
    model.load()
    ModelServer(
        http_port=args.port,
        workers=1,
        enable_grpc=False,
        enable_docs_url=False,
        enable_latency_logging=False,
    ).start([model])


if __name__ == "__main__":
    main()
