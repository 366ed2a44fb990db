"""The shipped reference model (models/reference/, DVC-tracked in the in-repo remote; bin/setup fetches it): it
loads without a registry, decides with its video head, carries what it was trained on, fits the size budget, and
its model card quotes the figures its own loso.json holds."""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
MODEL = ROOT / "models" / "reference"


@pytest.fixture(scope="module")
def loso():
    if not (MODEL / "checkpoint.pt").is_file():
        pytest.fail("models/reference/checkpoint.pt is missing: `dvc pull models/reference.dvc` (bin/setup does)")
    return json.loads((MODEL / "loso.json").read_text())


def test_the_reference_checkpoint_is_self_describing_and_small(loso):
    from components.inference.predictor import Predictor

    assert (MODEL / "checkpoint.pt").stat().st_size <= 5 * 1024 * 1024
    pred = Predictor.from_checkpoint(MODEL / "checkpoint.pt")
    assert pred.video_head is not None and list(pred.video_head.features) == loso["config"]["features"]
    assert pred.threshold == pytest.approx(loso["threshold"])
    trained = pred.extra["trained_on"]
    assert trained["manifest_sha256"] == loso["manifest_sha256"] and len(trained["sources"]) == loso["n_sources"]
    assert pred.crop_size == loso["config"]["crop_size"] and pred.clips_per_video == loso["config"]["clips_per_video"]


def test_predict_uses_the_reference_without_a_registry(loso, carphone_video_path, capsys, monkeypatch, tmp_path):
    from flows.cli import main

    # No MLflow store anywhere near: the reference model needs none.
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path}/absent.db")
    assert main(["predict", carphone_video_path, "--reference", "--params", str(tmp_path / "none.yaml")]) == 0
    answer = json.loads(capsys.readouterr().out)
    assert answer["model"]["checkpoint"].endswith("models/reference/checkpoint.pt")
    assert answer["decision"] in ("live", "spoof") and 0.0 <= answer["score"] <= 1.0
    assert all(answer["video_features"][f] >= 0.0 for f in loso["config"]["features"])  # the shipped head's
    assert not (tmp_path / "absent.db").exists()


def test_the_model_card_quotes_the_figures_of_the_shipped_model(loso):
    card = (ROOT / "docs" / "model-card.md").read_text()
    rows = loso["rows"]
    for kind in ("live_still", "replay", "deepfake"):
        auc = f"{rows[kind]['auc']:.2f}"
        assert re.search(rf"\| {kind} .*\| {re.escape(auc)} ", card), f"model card lacks {kind} AUC {auc}"
    assert f"{100 * rows['live']['bpcer']:.0f} %" in card
    assert f"{loso['threshold']:.3f}" in card
    assert f"{loso['n_videos']} videos" in card


@pytest.mark.slow
def test_serve_uses_the_reference_without_a_registry(loso, carphone_video_path, tmp_path):
    """`eulernet serve --reference --smoke-test VIDEO` as a real process (its own local Ray, Serve over HTTP on
    127.0.0.1): one request answered by the video head, the same score `eulernet predict` gives, no store made."""
    import os
    import shutil
    import subprocess
    import sys

    from components.inference.predictor import Predictor
    from tests.serve.conftest import free_port

    exe = shutil.which("eulernet", path=str(Path(sys.executable).parent)) or shutil.which("eulernet")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{tmp_path}/absent.db"
    proc = subprocess.run([exe, "serve", "--reference", "--allow-anonymous", "--port", str(free_port()), "--smoke-test",
                           carphone_video_path], cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-3000:]
    body = json.loads(next(line for line in proc.stdout.splitlines() if line.startswith('{"decision"')))
    assert body["model"]["version"] == "local" and body["decision"] in ("live", "spoof")
    pred = Predictor.from_checkpoint(MODEL / "checkpoint.pt")
    direct = pred.predict_file(carphone_video_path, max_clips=4)  # serve.max_clips
    assert body["score"] == pytest.approx(direct["score"], abs=1e-4)
    assert not (tmp_path / "absent.db").exists()
