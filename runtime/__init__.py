"""Sluice runtime: the model server in the GPU pods, ONNX models served with onnxruntime over
the Open Inference Protocol (HTTP and gRPC); ``sluice-runtime`` is its command."""
