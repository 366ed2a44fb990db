"""`eulernet benchmark temporal`, the one-command held-out benchmark, at smoke size through the real CLI:
generation (identity-disjoint), Ray Data labeling, Ray Train fits tracked in MLflow, evaluation, references.

The figures at this size mean nothing (a handful of test videos, one epoch); what is checked is that every
step runs, the summary has the promised layout and its numbers agree with the files they come from, and a
rerun reuses every finished step instead of redoing it.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
EULERNET = str(Path(sys.executable).parent / "eulernet")


def _bench(out: Path, env: dict) -> subprocess.CompletedProcess:
    cmd = [EULERNET, "benchmark", "temporal", "--quick", "--out", str(out), "--rows", "eulernet", "single_frame",
           "--epochs", "1", "--no-progress"]
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-5000:]}"
    return proc


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("bench")
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp / 'mlflow.db'}", "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop("RAY_ADDRESS", None)
    out = tmp / "temporal"
    return {"out": out, "env": env, "first": _bench(out, env)}


@pytest.mark.slow
def test_summary_has_every_row_with_consistent_figures(bench):
    out = bench["out"]
    summary = json.loads((out / "summary.json").read_text())
    rows = summary["rows"]
    assert set(rows) == {"eulernet", "single_frame", "one_frame", "chroma_pulse", "frame_difference",
                         "learned_stats"}
    assert summary["n_test_identities"] == len(set(pd.read_csv(out / "data" / "manifest.csv").query(
        "split == 'test'")["meta"].map(lambda m: json.loads(m)["identity"])))
    assert rows["eulernet"]["seeds"] == [0]  # --quick keeps its own single seed unless --seeds is given
    manifest = pd.read_csv(out / "data" / "manifest.csv")
    test_videos = manifest[manifest["split"] == "test"]
    for name, r in rows.items():
        assert set(r) >= {"test_acer", "test_auc", "acer_ci95", "n_test_videos", "wall_s"}, name
        assert r["n_test_videos"] == len(test_videos), name
        lo, hi = r["acer_ci95"]
        assert 0.0 <= lo <= hi <= 1.0, name
        assert 0.0 <= r["test_auc"] <= 1.0 and 0.0 <= r["test_acer"] <= 1.0
    # The learned row's figure is the evaluation's own number for its seed's checkpoint.
    result = json.loads((out / "runs" / "eulernet-s0" / "result.json").read_text())
    assert rows["eulernet"]["test_acer"] == pytest.approx(result["test_acer"])
    metrics = json.loads((out / "runs" / "eulernet-s0" / "metrics.json").read_text())
    assert metrics["acer"] == pytest.approx(result["test_acer"])
    assert "eulernet" in (out / "table.md").read_text()
    assert (out / "training_curves.png").stat().st_size > 0
    assert "summary:" in bench["first"].stdout


def test_test_identities_were_never_trained_on(bench):
    manifest = pd.read_csv(bench["out"] / "data" / "manifest.csv")
    ident = manifest["meta"].map(lambda m: json.loads(m)["identity"])
    train = set(ident[manifest["split"] == "train"])
    held = set(ident[manifest["split"].isin(["dev", "test"])])
    assert train and held and not (train & held)


def test_the_trained_checkpoint_is_the_eulernet_variant_and_logged_to_mlflow(bench):
    from mlflow.tracking import MlflowClient

    from components.inference.predictor import Predictor

    result = json.loads((bench["out"] / "runs" / "eulernet-s0" / "result.json").read_text())
    client = MlflowClient(tracking_uri=bench["env"]["MLFLOW_TRACKING_URI"])
    run = client.get_run(result["mlflow_run_id"])
    assert run.data.tags["benchmark"] == "temporal" and run.data.tags["row"] == "eulernet"
    ckpt = json.loads((bench["out"] / "runs" / "eulernet-s0" / "metrics.json").read_text())["checkpoint"]
    p = Predictor.from_checkpoint(ckpt)
    assert p.variant == "eulernet" and p.architecture.euler_alpha > 0


def test_a_rerun_reuses_data_labels_and_runs(bench):
    out = bench["out"]
    before = json.loads((out / "summary.json").read_text())
    run_before = json.loads((out / "runs" / "eulernet-s0" / "result.json").read_text())
    videos = sorted((out / "data" / "videos").iterdir())
    mtimes = [v.stat().st_mtime_ns for v in videos]
    proc = _bench(out, bench["env"])
    assert "eulernet seed 0: cached" in proc.stdout
    assert [v.stat().st_mtime_ns for v in videos] == mtimes  # not generated again
    report = pd.read_csv(out / "shards" / "report.csv")
    assert report["cached"].all()  # not labeled again
    run_after = json.loads((out / "runs" / "eulernet-s0" / "result.json").read_text())
    assert run_after["mlflow_run_id"] == run_before["mlflow_run_id"]  # not trained again
    after = json.loads((out / "summary.json").read_text())
    for name in before["rows"]:
        assert after["rows"][name]["test_acer"] == before["rows"][name]["test_acer"]
        assert after["rows"][name]["acer_ci95"] == before["rows"][name]["acer_ci95"]
