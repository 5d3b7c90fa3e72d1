"""Fixtures shared by every test tier: the local cluster lives in e2e.cluster.fixtures."""

pytest_plugins = ["e2e.cluster.fixtures"]
