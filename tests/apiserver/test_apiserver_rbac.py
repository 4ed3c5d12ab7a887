"""The deploy step's ServiceAccount (manifests/base/deployer-rbac.yaml) may do what the deploy step
and the canary actuator need and nothing more, as the real RBAC authorizer decides
(SubjectAccessReview for that account, and SelfSubjectRulesReview with its own token)."""

from __future__ import annotations

import pytest
from kubernetes import client
from project_manifests import DEPLOYER_SERVICE_ACCOUNT

pytestmark = pytest.mark.apiserver

ISVC = ("serving.kserve.io", "inferenceservices", "")
ISVC_STATUS = ("serving.kserve.io", "inferenceservices", "status")
EVENTS = ("", "events", "")
# What components/deploy.py calls (read, create, merge-patch the InferenceService) and what the
# canary actuator calls (read, merge-patch, and record its decisions as Events).
NEEDED = [(ISVC, "get"), (ISVC, "create"), (ISVC, "patch"), (EVENTS, "create")]
NOT_NEEDED = [
    (ISVC, "delete"),
    (ISVC, "deletecollection"),
    (ISVC_STATUS, "update"),  # status is the KServe controller's to write
    (ISVC_STATUS, "patch"),
    (("", "secrets", ""), "get"),
    (("", "secrets", ""), "list"),
    (("", "pods", ""), "create"),
    (("", "pods", "exec"), "create"),
    (("", "serviceaccounts", "token"), "create"),
    (("rbac.authorization.k8s.io", "roles", ""), "create"),
    (("rbac.authorization.k8s.io", "rolebindings", ""), "create"),
    (("apps", "deployments", ""), "create"),
    (("serving.knative.dev", "services", ""), "patch"),
]


def _allowed(admin_api, namespace: str, resource: tuple[str, str, str], verb: str) -> bool:
    group, plural, subresource = resource
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{namespace}:{DEPLOYER_SERVICE_ACCOUNT}",
            groups=[
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
                "system:authenticated",
            ],
            resource_attributes=client.V1ResourceAttributes(
                namespace=namespace,
                group=group,
                resource=plural,
                subresource=subresource,
                verb=verb,
            ),
        )
    )
    answer = client.AuthorizationV1Api(admin_api).create_subject_access_review(review)
    return bool(answer.status.allowed)


@pytest.mark.parametrize(
    ("resource", "verb"),
    NEEDED,
    ids=lambda x: x if isinstance(x, str) else "/".join(filter(None, x)),
)
def test_deployer_may_do_what_the_deploy_step_needs(admin_api, project_base, resource, verb):
    assert _allowed(admin_api, project_base, resource, verb)


@pytest.mark.parametrize(
    ("resource", "verb"),
    NOT_NEEDED,
    ids=lambda x: x if isinstance(x, str) else "/".join(filter(None, x)),
)
def test_deployer_may_not_do_more(admin_api, project_base, resource, verb):
    assert not _allowed(admin_api, project_base, resource, verb)


def test_deployer_has_no_rights_in_other_namespaces(admin_api, project_base, namespace):
    for resource, verb in NEEDED:
        assert not _allowed(admin_api, namespace, resource, verb), (resource, verb)
