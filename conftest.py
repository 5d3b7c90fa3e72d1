"""Plugins for every test tier: the local cluster's fixtures live in e2e.cluster.fixtures;
pytester runs pytest on small generated test files (tests/cluster/test_fixtures.py)."""

pytest_plugins = ["e2e.cluster.fixtures", "pytester"]
