"""Experiments between model versions: bandit allocation, A/B/n tests and shadow readouts.

Each strategy is a pure policy over one interval of evidence: evidence in, a decision and the next
state out; the state is JSON so it can live on the InferenceService as an annotation.
"""
