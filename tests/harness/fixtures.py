"""Pytest fixtures over the harness. Import the ones a test module needs:

    from tests.harness.fixtures import cluster_harness  # noqa: F401  (pytest finds fixtures by name)

The harness is module-scoped: starting it costs ~30 s and stopping ~15 s on 2 cores, so the tests of one
module share it, and no Ray state outlives the module that asked for it.
"""
from __future__ import annotations

import pytest

from .cluster import ClusterHarness, NodeSpec


@pytest.fixture(scope="module")
def cluster_harness(tmp_path_factory):
    """S3 (moto) + MLflow server (SQLite, artifacts on S3) + Ray head and one worker node, all on 127.0.0.1.

    The head has 1 CPU and resource ``node_head``, the worker 1 CPU and ``node_b``: two 1-CPU nodes force a
    2-worker Ray Train run (or a 2-task Ray Data stage) onto both nodes.
    """
    harness = ClusterHarness(
        tmp_path_factory.mktemp("cluster"),
        head=NodeSpec("head", num_cpus=1, resources={"node_head": 1}),
        workers=[NodeSpec("node_b", num_cpus=1, resources={"node_b": 1})],
    )
    harness.start()
    try:
        yield harness
    finally:
        harness.stop()
