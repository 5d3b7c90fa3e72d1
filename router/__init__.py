"""Sluice router: the control plane of the Envoy proxy that splits an InferenceService's
traffic between its variants; ``sluice-router`` is its command."""
