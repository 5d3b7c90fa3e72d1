"""Whole-system scenarios and the tooling that starts a real local Kubernetes cluster."""
