"""Local multi-node harness: moto S3, an MLflow tracking server and a multi-node Ray cluster on 127.0.0.1.

Use ``ClusterHarness`` directly (a context manager) or the pytest fixtures in ``tests.harness.fixtures``.
"""
from .cluster import (
    AWS_TEST_ENV,
    ClusterHarness,
    HarnessError,
    MlflowServer,
    NodeSpec,
    RayNodes,
    S3Server,
    free_port,
    private_dirs_supported,
)

__all__ = [
    "AWS_TEST_ENV", "ClusterHarness", "HarnessError", "MlflowServer", "NodeSpec", "RayNodes", "S3Server",
    "free_port",
    "private_dirs_supported",
]
