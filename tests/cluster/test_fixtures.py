"""The cluster fixtures mark their users: ``-m 'not cluster'`` (``make unit``) leaves out every
test that would start a cluster, marker written or not."""

from __future__ import annotations

import pytest

TESTS = """
import pytest

def test_pure():
    pass

def test_cluster_through_a_fixture(namespace):
    pass

def test_cluster_directly(cluster):
    pass

@pytest.fixture
def crd(api):
    return "crd"

def test_cluster_through_a_local_fixture(crd):
    pass
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest('pytest_plugins = ["e2e.cluster.fixtures"]')
    pytester.makepyfile(test_suite=TESTS)
    return pytester


def test_tests_using_the_cluster_are_left_out_of_the_unit_run(suite: pytest.Pytester) -> None:
    result = suite.runpytest("-m", "not cluster")
    result.assert_outcomes(passed=1, deselected=3)


def test_tests_using_the_cluster_are_marked(suite: pytest.Pytester) -> None:
    result = suite.runpytest("-m", "cluster", "--collect-only", "-q")
    result.stdout.fnmatch_lines(
        [
            "test_suite.py::test_cluster_through_a_fixture",
            "test_suite.py::test_cluster_directly",
            "test_suite.py::test_cluster_through_a_local_fixture",
            "*3/4 tests collected (1 deselected)*",
        ]
    )
