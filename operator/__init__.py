"""Sluice operator: reconciles InferenceService resources into GPU inference deployments."""
