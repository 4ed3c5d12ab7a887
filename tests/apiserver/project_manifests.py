"""Names from manifests/base that the API tests refer to."""

from tests.apiserver.control_plane import REPO_ROOT

BASE = REPO_ROOT / "manifests" / "base"
OVERLAYS = sorted(
    p.parent for p in (REPO_ROOT / "manifests" / "overlays").glob("*/kustomization.yaml")
)
PROJECT_NAMESPACE = "mlops"
# The account the pipeline's deploy step and the canary actuator run as inside the namespace.
DEPLOYER_SERVICE_ACCOUNT = "mlops-deployer"
