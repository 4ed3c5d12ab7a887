"""Where shadow traffic is mirrored (docs/experiments.md) rests on facts in Traefik's source at the
version versions.mk pins: re-read here, so a Traefik upgrade re-checks the choice."""

from __future__ import annotations

import re

from tests.upstream import ROOT, go_module_dir, kserve_file, pins

DOC = ROOT / "docs" / "experiments.md"


def traefik_source(path: str) -> str:
    return (
        go_module_dir("github.com/traefik/traefik/v3", pins()["TRAEFIK_VERSION"]) / path
    ).read_text()


def test_the_finding_names_the_pinned_traefik_version() -> None:
    named = re.findall(r"Read in Traefik (v\d+\.\d+\.\d+)'s source", DOC.read_text())
    assert named == [pins()["TRAEFIK_VERSION"]], (
        "versions.mk pins another Traefik than the one docs/experiments.md was read at: "
        "re-read its Gateway API provider and mirroring service, then update the page"
    )


def test_httproute_request_mirror_is_unsupported_and_fails_the_whole_rule_with_500() -> None:
    src = traefik_source("pkg/provider/kubernetes/gateway/httproute.go")
    switch = src[src.index("func (p *Provider) loadMiddlewares(") :]
    switch = switch[: switch.index("\n}\n")]
    handled = re.findall(r"case gatev1\.(HTTPRouteFilter\w+):", switch)
    assert handled == [
        "HTTPRouteFilterRequestRedirect",
        "HTTPRouteFilterRequestHeaderModifier",
        "HTTPRouteFilterResponseHeaderModifier",
        "HTTPRouteFilterExtensionRef",
        "HTTPRouteFilterURLRewrite",
    ]
    assert 'return nil, fmt.Errorf("unsupported filter %s", filter.Type)' in switch
    # a filter error sends the rule's router to a weighted service of one 500 member
    on_error = src[src.index('Msg("Unable to load HTTPRoute filters")') :][:600]
    assert 'Name:   "invalid-httproute-filter"' in on_error
    assert "Status: ptr.To(500)" in on_error
    assert "router.Service = errWrrName" in on_error
    features = traefik_source("pkg/provider/kubernetes/gateway/features.go")
    assert "RequestMirror" not in features


def test_traefiks_mirroring_service_answers_first_and_discards_the_mirrors_answers() -> None:
    src = traefik_source("pkg/server/service/loadbalancer/mirror/mirror.go")
    serve = src[src.index("func (m *Mirroring) ServeHTTP(") :]
    serve = serve[: serve.index("\n}\n")]
    assert serve.index("m.handler.ServeHTTP(rw, rr.clone(req.Context()))") < serve.index(
        "m.routinePool.GoCtx("
    )
    assert "handler.ServeHTTP(m.rw, r.WithContext(contextStopPropagation{ctx}))" in serve
    assert "rw:               blackHoleResponseWriter{}," in src
    # the CRD provider builds it from a TraefikService's `mirroring`
    crd = traefik_source("pkg/provider/kubernetes/crd/kubernetes_http.go")
    assert "case tService.Spec.Mirroring != nil:" in crd


def test_kserve_rewrites_an_httproute_whose_backends_differ_from_its_own() -> None:
    src = kserve_file(
        "pkg/controller/v1beta1/inferenceservice/reconcilers/ingress/httproute_reconciler.go"
    )
    predictor = src[src.index("func (r *RawHTTPRouteReconciler) reconcilePredictorHTTPRoute(") :]
    predictor = predictor[: predictor.index("\n}\n")]
    assert "if !semanticHttpRouteEquals(desired, existingHttpRoute) {" in predictor
    assert "r.client.Update(ctx, desired)" in predictor
    equals = src[src.index("func semanticHttpRouteEquals(") :]
    assert "return equality.Semantic.DeepDerivative(desired.Spec, existing.Spec)" in equals
