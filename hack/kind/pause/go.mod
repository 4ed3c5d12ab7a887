module mlops-platform/hack/kind/pause

go 1.26.0
