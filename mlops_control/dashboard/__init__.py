"""The platform's read-only dashboard: every model, its champion, live quality, drift, rollouts and
retraining runs, as a small JSON API and pages drawn in the browser.

One app (`app.create_app`) over one `DashboardSource`: `LocalSource` reads the local registry and
the JSON-lines logs (`mlops dashboard`); `ClusterSource` reads the registry, Prometheus' HTTP API
and the Kubernetes API (the in-cluster Deployment). `views` turns either into the pages' JSON.
`grafana` generates the Grafana dashboards for teams that run Grafana.
"""
