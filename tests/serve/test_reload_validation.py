"""Hot reload trusts nothing (issue 13, item 4): before a replica swaps to a new champion it checks the version,
the metadata it decides with and a reference clip's score; a model that fails is not served, not downloaded again
at every poll, and /v1/model says why. No Ray Serve needed: the check and the poll loop run as plain code."""
from __future__ import annotations

import time
from types import SimpleNamespace

import numpy as np
import pytest


@pytest.fixture(scope="module")
def predictor():
    from components.inference.checkpoint import build_meta, make_checkpoint
    from components.inference.predictor import Predictor
    from components.model.eulernet import create_model

    return Predictor.from_checkpoint(make_checkpoint(create_model("eulernet", width=0.125),
                                                     build_meta(variant="eulernet", crop_size=32)))


def test_a_sound_model_passes(predictor):
    from components.serving.slot import check_candidate

    check_candidate(predictor, {"name": "m", "version": "3"}, "3")


def stub(**kw):
    base = {"clip_len": 4, "crop_size": 32, "threshold": 0.5, "score_clips": lambda clips: np.array([0.4])}
    return SimpleNamespace(**{**base, **kw})


@pytest.mark.parametrize("model,version,why", [
    (stub(), "4", "asked for v3, loaded v4"),
    (stub(threshold=float("nan")), "3", "threshold nan is not in [0, 1]"),
    (stub(threshold=7.0), "3", "threshold 7.0 is not in [0, 1]"),
    (stub(crop_size=0), "3", "no servable input"),
    (stub(score_clips=lambda clips: np.array([np.nan])), "3", "reference clip scored [nan]"),
    (stub(score_clips=lambda clips: np.array([1.7])), "3", "reference clip scored [1.7]"),
    (stub(score_clips=lambda clips: np.array([0.1, 0.2])), "3", "not one value"),
])
def test_a_broken_model_is_rejected_naming_why(model, version, why):
    from components.serving.slot import CandidateRejected, check_candidate

    with pytest.raises(CandidateRejected, match="m v3 rejected before the swap") as err:
        check_candidate(model, {"name": "m", "version": version}, "3")
    assert why in str(err.value)


def test_a_real_model_producing_nan_is_rejected(predictor, monkeypatch):
    from components.serving.slot import CandidateRejected, check_candidate

    monkeypatch.setattr(predictor, "predict_maps", lambda crops: np.full((1, 4, 4, 4), np.nan, np.float32))
    with pytest.raises(CandidateRejected, match="reference clip scored"):
        check_candidate(predictor, {"name": "m", "version": "5"}, "5")


def test_the_poll_loop_keeps_the_old_model_and_does_not_retry_a_rejected_one():
    from components.serving.slot import CandidateRejected, Loaded, ModelSlot

    champion = {"version": "1"}
    loads = []

    def load(version):
        loads.append(version)
        if version == "2":
            raise CandidateRejected("m v2 rejected before the swap: the reference clip scored [nan]")
        return Loaded(None, {"name": "m", "version": version or champion["version"]}, time.time())

    swaps = []
    slot = ModelSlot(load, champion=lambda: champion["version"], interval_s=0.01,
                     on_swap=lambda new, old: swaps.append((new.info["version"], old and old.info["version"])))
    slot.start()
    champion["version"] = "2"
    try:
        time.sleep(0.3)  # ~30 polls
        assert loads == [None, "2"]  # checked once, not downloaded again at every poll
        assert slot.current.info["version"] == "1"  # still serving the old champion
        assert slot.rejected_version == "2" and "reference clip scored" in slot.reload_error
        champion["version"] = "3"  # a new promotion: loaded, checked, swapped
        deadline = time.time() + 5
        while slot.current.info["version"] != "3" and time.time() < deadline:
            time.sleep(0.01)
        assert slot.current.info["version"] == "3" and loads == [None, "2", "3"]
        assert slot.rejected_version is None and slot.reload_error is None
        assert swaps == [("1", None), ("3", "1")]  # the metric hook saw each swap once
    finally:
        slot.stop()
