"""The contracts between Sluice's parts, each defined once.

The operator writes what the runtime and the router read: labels on the objects it creates,
the ports and paths the runtime listens on, the runtime's command line, the route table of an
InferenceService. The runtime exports the metrics the autoscaler and the rollout analysis
read. Each side imports the definition from here, and never the other side's code.

- ``api``: the InferenceService API's group, version and kind.
- ``labels``: labels and annotations on the operator's children.
- ``ports``: the runtime's ports and HTTP paths, and the stable Service's ports.
- ``metrics``: metric names, types, labels and buckets the runtime exports.
- ``flags``: the runtime's command line, its environment variables and defaults.
- ``routes``: the route table the operator derives and the router control plane serves.

This package imports only the standard library (import-linter and a test keep it so), so
any part, and any tool, can depend on it without pulling in another part.
"""
