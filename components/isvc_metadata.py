"""Every annotation and label the platform keeps on an InferenceService: one prefix, one place.

Written by the deploy step and the traffic writer (components/), the canary controller and the
retraining trigger (mlops_control/). `hack/deploy.sh` lists the same annotations in KServe's
`serviceAnnotationDisallowedList` (KServe copies an InferenceService's annotations onto its
predictors' pod templates, so a changing one would restart the model pods);
tests/kind/test_cluster_files.py keeps that list equal to `ANNOTATIONS`.
"""

from __future__ import annotations

PREFIX = "mlops.platform/"

# The traffic state (components/isvc_traffic.py): what a rollback returns to, what is analysed.
MODEL_VERSION = PREFIX + "model-version"  # the version the predictor serves (the builder's)
STABLE_VERSION = PREFIX + "stable-version"
STABLE_STORAGE_URI = PREFIX + "stable-storage-uri"
CANARY_VERSION = PREFIX + "canary-version"
ROLLED_BACK_VERSION = PREFIX + "rolled-back-version"
LAST_DECISION = PREFIX + "last-decision"  # the rollout's last decision, as JSON

# The canary controller (mlops_control/controller.py).
ROLLOUT_POLICY = PREFIX + "rollout-policy"  # opt-in: a policy inline or configmap:<name>
ROLLOUT_STATE = PREFIX + "rollout-state"  # the rollout's progress (JSON: RolloutRecord)
ROLLOUT_STATUS = PREFIX + "rollout-status"  # the step and the last decision's numbers
ROLLOUT_COMMAND = PREFIX + "rollout"  # abort | promote, by hand

# The retraining trigger (mlops_control/retraining/cluster_trigger.py).
RETRAINING_POLICY = PREFIX + "retraining-policy"  # opt-in: a TriggerPolicy inline
LAST_RETRAINING = PREFIX + "last-retraining"  # JSON: RetrainingRecord (the cool-down)

# A label (Knative mode only), for `kubectl get isvc -L mlops.platform/rollout-step`.
ROLLOUT_STEP_LABEL = PREFIX + "rollout-step"

ANNOTATIONS: tuple[str, ...] = (
    MODEL_VERSION,
    STABLE_VERSION,
    STABLE_STORAGE_URI,
    CANARY_VERSION,
    ROLLED_BACK_VERSION,
    LAST_DECISION,
    ROLLOUT_POLICY,
    ROLLOUT_STATE,
    ROLLOUT_STATUS,
    ROLLOUT_COMMAND,
    RETRAINING_POLICY,
    LAST_RETRAINING,
)
LABELS: tuple[str, ...] = (ROLLOUT_STEP_LABEL,)
