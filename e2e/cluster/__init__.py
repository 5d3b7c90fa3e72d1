"""A real local Kubernetes control plane for tests and demos.

etcd, kube-apiserver, kube-controller-manager, kube-scheduler and kwok (fake GPU nodes),
built from pinned Go modules and started on loopback ports. ``python -m e2e.cluster``
builds, starts and stops it; ``e2e.cluster.fixtures`` gives pytest a session cluster.
"""
