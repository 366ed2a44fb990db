"""Serving through a registry outage (issue 25, item 5): a replica keeps a copy of the last version it verified and
served; one (re)started while the store cannot be read serves that copy and says so; registry-read failures are
counted, never read as "no champion", and the serving path never creates a store. Real MLflow (SQLite), real
registered model, no Ray Serve needed: the slot is the replica's model logic as plain code."""
from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def store(tmp_path):
    import mlflow

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    previous = mlflow.get_tracking_uri()
    mlflow.set_tracking_uri(uri)
    mlflow.create_experiment("eulernet-register", artifact_location=str(tmp_path / "artifacts"))
    yield uri
    mlflow.set_tracking_uri(previous)


@pytest.mark.slow
def test_a_replica_started_in_an_outage_serves_its_last_known_good(tmp_path, store, monkeypatch):
    from components.inference.checkpoint import build_meta, save_checkpoint
    from components.model.eulernet import create_model
    from components.registry.champion import promote
    from components.registry.register import register
    from components.serving import slot as slot_module
    from components.serving.config import ServeConfig
    from components.serving.slot import CandidateRejected, RegistryUnavailable, build_slot

    ckpt = save_checkpoint(tmp_path / "m.pt", create_model("eulernet", width=0.125),
                           build_meta(variant="eulernet", crop_size=32))
    v1 = register(ckpt, "m", {"acer": 0.1}, threshold=0.5, test_data_hash="outage-test")
    promote("m")
    cfg = ServeConfig(model_name="m", engine="torch", last_known_good_dir=str(tmp_path / "kept"))
    first = build_slot(cfg, store, None)
    first.start()
    first.stop()
    assert first.current.info["version"] == v1 and not first.current.info.get("last_known_good")
    kept = tmp_path / "kept"
    [folder] = list(kept.iterdir())
    assert json.loads((folder / "info.json").read_text())["version"] == v1

    # A refused candidate is never kept: v2 fails the candidate check, the kept copy stays v1, nothing staged left.
    register(ckpt, "m", {"acer": 0.05}, threshold=0.5, test_data_hash="outage-test")
    promote("m")

    def refuse(predictor, info, version):
        raise CandidateRejected(f"m v{version} rejected before the swap: injected")

    monkeypatch.setattr(slot_module, "check_candidate", refuse)
    first.poll_once()
    assert first.rejected_version == "2" and first.current.info["version"] == v1
    assert [p.name for p in kept.iterdir()] == [folder.name]
    assert json.loads((folder / "info.json").read_text())["version"] == v1
    monkeypatch.undo()
    clip = np.random.default_rng(1).integers(0, 256, (1, 4, 32, 32, 3), dtype=np.uint8)  # (N, T, S, S, 3)
    expected = first.current.predictor.score_clips(clip)

    (tmp_path / "mlflow.db").rename(tmp_path / "elsewhere.db")  # the outage: the store cannot be read
    counted = []
    slot = build_slot(cfg, store, None, on_registry_failure=lambda: counted.append(1))
    slot.start()
    try:
        assert slot.current.info["version"] == v1 and slot.current.info["last_known_good"] is True
        np.testing.assert_allclose(slot.current.predictor.score_clips(clip), expected, rtol=1e-5)
        assert slot.registry_failures == 1 and counted == [1]
        assert "no MLflow registry" in slot.reload_error
        slot.poll_once()  # still down: counted again, the kept model still serves
        assert slot.registry_failures == 2 and slot.current.info["version"] == v1
        assert not (tmp_path / "mlflow.db").exists()  # the serving path never created an empty store
        with pytest.raises(RegistryUnavailable, match="no MLflow registry"):  # no copy kept: refuse, say why
            build_slot(dataclasses.replace(cfg, last_known_good_dir=""), store, None).start()

        (tmp_path / "elsewhere.db").rename(tmp_path / "mlflow.db")  # back: the next poll clears the error
        slot.poll_once()
        assert slot.reload_error is None and slot.registry_failures == 2
    finally:
        slot.stop()


def test_the_kept_copy_is_replaced_as_a_whole(tmp_path):
    from components.serving.slot import LastKnownGood

    keep = LastKnownGood(tmp_path / "kept" / "m@champion")
    (tmp_path / "c.pt").write_bytes(b"v1")
    keep.commit(keep.stage(tmp_path / "c.pt", None), {"name": "m", "version": "1"})
    (tmp_path / "c.pt").write_bytes(b"v2")
    staged = keep.stage(tmp_path / "c.pt", None)
    assert (keep.folder / "checkpoint.pt").read_bytes() == b"v1"  # staging leaves the kept copy alone
    keep.commit(staged, {"name": "m", "version": "2"})
    assert (keep.folder / "checkpoint.pt").read_bytes() == b"v2"
    assert json.loads((keep.folder / "info.json").read_text())["version"] == "2"
    assert sorted(p.name for p in keep.folder.parent.iterdir()) == ["m@champion"]  # no temp folders left


def test_a_killed_replicas_download_is_swept_by_the_next_and_a_load_leaves_none(tmp_path, store, monkeypatch):
    """A replica killed while it loads a version (a SIGKILL, Serve stopping it) leaves its download folder in the
    temp dir; the next replica to start removes the folders of processes that are gone, never a live one's. A load
    that completes leaves nothing, and its folder names its process."""
    import subprocess
    import tempfile

    from components.inference.checkpoint import build_meta, save_checkpoint
    from components.model.eulernet import create_model
    from components.registry import load as load_module
    from components.registry.champion import promote
    from components.registry.register import register
    from components.serving.config import ServeConfig
    from components.serving.slot import build_slot

    tmp = tmp_path / "tmp"
    tmp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp))
    dead = subprocess.Popen(["true"])
    dead.wait()
    left = tmp / f"m-v2-pid{dead.pid}-abc123"  # what a killed replica leaves
    left.mkdir()
    (left / "checkpoint.pt").write_bytes(b"partial")
    alive = tmp / f"m-v2-pid{1}-def456"  # pid 1 runs: another replica's load in progress
    alive.mkdir()
    other = tmp / "m-v2-notours"
    other.mkdir()

    ckpt = save_checkpoint(tmp_path / "m.pt", create_model("eulernet", width=0.125),
                           build_meta(variant="eulernet", crop_size=32))
    register(ckpt, "m", {"acer": 0.1}, threshold=0.5, test_data_hash="sweep-test")
    promote("m")
    seen = []
    real_download = load_module.download_checkpoint

    def download(name, version, dst=None, tracking_uri=None):
        seen.append(Path(dst).name)
        return real_download(name, version, dst=dst, tracking_uri=tracking_uri)

    monkeypatch.setattr(load_module, "download_checkpoint", download)
    slot = build_slot(ServeConfig(model_name="m", engine="torch", last_known_good_dir=""), store, None)
    try:
        assert not left.exists() and alive.is_dir() and other.is_dir()  # swept at build, live and foreign kept
        slot.start()
        assert slot.current.info["version"] == "1"
    finally:
        slot.stop()
    assert len(seen) == 1 and seen[0].startswith(f"m-v1-pid{os.getpid()}-")
    # the load left nothing of its own (torch may add its own cache folder to the temp dir on first use)
    assert sorted(p.name for p in tmp.iterdir() if p.name.startswith("m-")) == sorted([alive.name, other.name])
