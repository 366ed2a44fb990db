"""benchmarks/decode_floor.py walks a video the way its figures claim: the whole window, every frame once, and
with non-reference frames skipped still every clip frame (its ``got`` column would otherwise be a guess)."""
from __future__ import annotations

import numpy as np
import pytest

from components.data.video import encode_h264

BENCHMARK = "decode_floor"  # the script the bench fixture loads (tests/code/conftest.py)


@pytest.fixture(scope="module")
def clip() -> bytes:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 255, (64, 96, 3), dtype=np.uint8)
    frames = np.stack([np.roll(base, 2 * t, axis=1) for t in range(90)])  # (90, 64, 96, 3): moving, so B-frames
    return encode_h264(frames, fps=30.0)


def test_walkers_count_the_window(bench, clip):
    assert bench.opencv_walk(clip, 60, 2) == 60
    assert bench.opencv_walk(clip, 1000, 1) == 90  # the stream ends first
    out, got, keys = bench.pyav_walk(clip, 60, 2, None)
    assert (out, got) == (60, 0) and keys >= 1


def test_skipping_non_reference_frames_keeps_the_clip_frames(bench, clip):
    from components.serving.inputs import ClipPlan

    keep = set(ClipPlan(4, 3, 4).frames_needed(90))
    out, got, _ = bench.pyav_walk(clip, 90, 1, keep)
    assert got == len(keep) == 16
    assert out < 90  # some frames were skipped: the lever was pulled, not a plain walk
