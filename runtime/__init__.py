"""Sluice runtime: the model server (Open Inference Protocol over HTTP and gRPC) and the
traffic router."""
