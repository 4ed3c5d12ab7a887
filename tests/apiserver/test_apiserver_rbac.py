"""The deploy step's ServiceAccount (manifests/base/deployer-rbac.yaml) may do what the deploy step
and the canary actuator need and nothing more, as the real RBAC authorizer decides
(SubjectAccessReview for that account, and SelfSubjectRulesReview with its own token)."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.apiserver.project_manifests import DEPLOYER_SERVICE_ACCOUNT

pytestmark = pytest.mark.apiserver

ISVC = ("serving.kserve.io", "inferenceservices", "")
ISVC_STATUS = ("serving.kserve.io", "inferenceservices", "status")
EVENTS = ("", "events", "")
# What components/deploy.py calls (read, create, merge-patch the InferenceService). Events are
# the in-cluster controller's (its own Role) or the operator's (`mlops canary`), never the step's.
NEEDED = [(ISVC, "get"), (ISVC, "create"), (ISVC, "patch")]
NOT_NEEDED = [
    (EVENTS, "create"),
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


def _granted(api: client.ApiClient, namespace: str) -> set[tuple[str, str, str]]:
    review = client.AuthorizationV1Api(api).create_self_subject_rules_review(
        client.V1SelfSubjectRulesReview(
            spec=client.V1SelfSubjectRulesReviewSpec(namespace=namespace)
        )
    )
    assert not review.status.incomplete, review.status.evaluation_error
    return {
        (group, resource, verb)
        for rule in review.status.resource_rules
        for group in rule.api_groups
        for resource in rule.resources
        for verb in rule.verbs
    }


def test_deployer_is_granted_nothing_beyond_its_needs(deployer_api, project_base, namespace):
    """What the account may do in its namespace beyond what any authenticated user may do (its
    rights in a namespace it has no binding in), as the authorizer lists it to the account itself
    (SelfSubjectRulesReview with its own token), is in NEEDED."""
    from_the_role = _granted(deployer_api, project_base) - _granted(deployer_api, namespace)
    needed = {
        (group, f"{plural}/{sub}" if sub else plural, verb) for (group, plural, sub), verb in NEEDED
    }
    assert from_the_role - needed == set()
