"""The control plane: everything that decides about model servers from outside them.

- `rollout/`: the analysis engine (pure), its policy, its metric sources and the rollout loop.
- `traffic/`: how traffic is moved (the InferenceService writer's actuator, the local router).
- `controller`: the in-cluster controller that runs the rollout step on every InferenceService.
- `retraining/`: the retraining trigger (sustained drift or lost quality starts a training run).
- `audit`: a prediction traced back to its model version and training data.

It sits above `serving` (what runs in the model server) and `pipelines` (training runs), which
never import each other.
"""
