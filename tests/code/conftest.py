"""Fixtures of the code tests."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def bench(request):
    """The benchmark script ``benchmarks/<BENCHMARK>.py`` named by the test module, loaded as a module: the scripts
    are commands, not a package, and their parts are tested where their figures depend on them."""
    name = request.module.BENCHMARK
    path = Path(__file__).resolve().parents[2] / "benchmarks" / f"{name}.py"
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
