"""Ray Train + MLflow, for real: 2 CPU workers on tiny shards, a killed worker, an interrupted run resumed.

Three short fits share one Ray session and one MLflow SQLite file (each new database costs ~7 s).
"""
from __future__ import annotations

import argparse
import json

import pandas as pd
import pytest
import yaml
from test_train_shards import write_tiny_shards

TINY = dict(variant="baseline", width=0.125, lr=3e-3, batch_size=4, num_workers=2, seed=0, cache_data=True)


@pytest.fixture(scope="module")
def shards(tmp_path_factory, ray_session):
    return write_tiny_shards(tmp_path_factory.mktemp("shards") / "shards")


@pytest.fixture(scope="module")
def mlflow_uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow')}/mlflow.db"


def _client(uri):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def test_train_flow_two_workers_lowers_loss_and_tracks_everything(tmp_path, shards, mlflow_uri, monkeypatch):
    from flows import train as train_flow

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_uri)
    monkeypatch.delenv("EULERNET_STORAGE", raising=False)
    (tmp_path / "data.dvc").write_text("outs:\n- md5: 0123456789abcdef.dir\n  path: sample\n")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({
        "label": {"crop_size": 32, "clip_interval": 3, "clips_per_video": 2, "backend": "dlib"},
        "train": {**TINY, "epochs": 3}}))
    args = argparse.Namespace(params="params.yaml", shards=str(shards), out="artifacts/model", resume=None,
                              experiment="eulernet", gates="artifacts/quality/summary.json", skip_gates=False)
    from flows.errors import StageError

    with pytest.raises(StageError, match="gates") as refused:  # hand-made shards never passed the data gates
        train_flow.run(args)
    assert refused.value.code == 2
    args.skip_gates = True
    assert train_flow.run(args) == 0

    out = tmp_path / "artifacts" / "model"
    hist = pd.read_csv(out / "history.csv")
    assert hist["epoch"].tolist() == [1, 2, 3]
    assert hist["train_loss"].iloc[-1] < hist["train_loss"].iloc[0]  # it learns
    assert (hist["train_clips"] == 32).all()  # both workers' clips counted: 16 videos x 2 clips
    summary = json.loads((out / "train_metrics.json").read_text())
    assert summary["dvc_data_hash"] == "0123456789abcdef.dir" and summary["resumed_from"] == []
    assert (out / "training_curves.png").read_bytes()[:4] == b"\x89PNG"

    # the best checkpoint is a Predictor checkpoint carrying the dev-chosen threshold of its epoch
    from components.inference.predictor import Predictor

    p = Predictor.from_checkpoint(out / "checkpoint.pt")
    best = hist.loc[hist["epoch"] == summary["best_epoch"]].iloc[0]
    assert p.threshold == pytest.approx(best["dev_threshold"]) and p.extra["epoch"] == summary["best_epoch"]
    assert best["dev_acer"] == hist["dev_acer"].min()
    assert (p.crop_size, p.clip_len, p.clip_interval, p.label_type) == (32, 4, 3, "location_map")

    # MLflow: one run, params, per-epoch metrics (one point per epoch), tags, resolved config, artifacts
    c = _client(mlflow_uri)
    exp = c.get_experiment_by_name("eulernet")
    runs = c.search_runs([exp.experiment_id])
    assert len(runs) == 1 and runs[0].info.run_id == summary["mlflow_run_id"]
    run = runs[0]
    assert run.info.status == "FINISHED"
    for k, v in {"train.lr": "0.003", "train.batch_size": "4", "train.num_workers": "2",
                 "train.variant": "baseline", "train.label_type": "location_map", "inference.crop_size": "32",
                 "inference.clip_interval": "3", "inference.landmark_backend": "dlib"}.items():
        assert run.data.params[k] == v, k
    for key in ("train_loss", "dev_apcer", "dev_bpcer", "dev_acer"):
        steps = [m.step for m in c.get_metric_history(run.info.run_id, key)]
        assert sorted(steps) == [1, 2, 3], key
    losses = [m.value for m in sorted(c.get_metric_history(run.info.run_id, "train_loss"), key=lambda m: m.step)]
    assert losses == pytest.approx(hist["train_loss"].tolist())
    assert run.data.tags["dvc_data_hash"] == "0123456789abcdef.dir" and run.data.tags["data_gates"] == "skipped"
    assert run.data.tags["git_commit"]  # 'unknown' outside a git repository, the commit inside one
    # The resolved device policy (no GPU here, no autoscaler): a param, and tags saying why.
    assert run.data.params["use_gpu_resolved"] == "False" and run.data.tags["use_gpu"] == "False"
    assert "GPU" in run.data.tags["use_gpu_reason"]
    arts = {a.path for a in c.list_artifacts(run.info.run_id)} | \
        {a.path for d in ("training", "model", "config") for a in c.list_artifacts(run.info.run_id, d)}
    assert {"config/resolved.json", "training/history.csv", "training/training_curves.png",
            "model/checkpoint.pt"} <= arts


@pytest.mark.slow
def test_killed_worker_restarts_and_interrupted_run_continues(tmp_path, shards, mlflow_uri):
    """Rank 0 dies hard (``tests.harness.faults`` through the loop's ``epoch_start_hook``) at the start of
    epoch 2 (one restart allowed: the new worker group goes on from epoch 1's checkpoint), then again at the
    start of epoch 3 (no restart left: the run stops). Calling fit again with the same name and storage
    continues from epoch 2's checkpoint instead of starting over."""
    from components.training.config import TrainConfig
    from components.training.driver import TrainingError, fit
    from tests.harness.faults import kill_rank0_at

    cfg = TrainConfig(**TINY, epochs=3, max_failures=1)
    kw = dict(experiment="resume", tracking_uri=mlflow_uri, artifact_location=str(tmp_path / "mlart"))
    faults = [{"epoch": 2, "marker": str(tmp_path / "kill2")}, {"epoch": 3, "marker": str(tmp_path / "kill3")}]
    with pytest.raises(TrainingError):
        fit(cfg, shards, str(tmp_path / "ray"), "interrupted", epoch_start_hook=kill_rank0_at(faults), **kw)
    assert (tmp_path / "kill2").read_text().startswith("killed at the start of epoch 2")
    assert (tmp_path / "kill3").read_text().startswith("killed at the start of epoch 3")
    c = _client(mlflow_uri)
    (first,) = c.search_runs([c.get_experiment_by_name("resume").experiment_id])
    assert first.info.status == "FAILED"
    assert first.data.tags["resumed_from_epoch"] == "1"  # the in-run restart loaded epoch 1's checkpoint
    logged = {m.step: m.value for m in c.get_metric_history(first.info.run_id, "train_loss")}
    assert sorted(logged) == [1, 2]

    res = fit(cfg, shards, str(tmp_path / "ray"), "interrupted", **kw)  # same name + storage: continue
    assert res.resumed_from == [1, 2]  # restart from epoch 1, then this call from epoch 2: nothing retrained
    assert res.use_gpu is False  # the device the run started on, kept on resume
    assert json.loads((tmp_path / "ray" / "interrupted" / "eulernet_device.json").read_text())["source"] == "resumed"
    assert res.history["epoch"].tolist() == [1, 2, 3]
    assert res.history["train_loss"].iloc[:2].tolist() == pytest.approx([logged[1], logged[2]])
    assert res.run_id == first.info.run_id  # the same MLflow run goes on
    run = c.get_run(res.run_id)
    assert run.info.status == "FINISHED" and run.data.tags["resumed_from_epoch"] == "1,2"
    assert sorted(m.step for m in c.get_metric_history(res.run_id, "train_loss")) == [1, 2, 3]


@pytest.mark.slow
def test_killed_train_stage_resumes_its_run_when_rerun_unchanged(tmp_path, shards):
    """A real SIGKILL of `eulernet train` (what an interrupted `dvc repro` does): the same command re-run with
    unchanged params and data continues the same Ray run and the same MLflow run from its last checkpoint."""
    import os
    import signal
    import subprocess
    import sys
    import time

    bin_dir = os.path.dirname(sys.executable)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}", "MLFLOW_TRACKING_URI": uri,
           "RAY_USAGE_STATS_ENABLED": "0"}
    for key in ("RAY_ADDRESS", "EULERNET_STORAGE"):
        env.pop(key, None)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"train": {**TINY, "epochs": 4}}))
    cmd = [f"{bin_dir}/eulernet", "train", "--skip-gates", "--shards", str(shards)]
    client, deadline = _client(uri), time.time() + 600
    # Create and migrate the store before the stage starts: MLflow migrates a new SQLite file on first open, and
    # this poller opening it while the stage is migrating it fails the stage (two migrations racing on one file).
    client.search_experiments()
    proc = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            start_new_session=True)
    run = None
    while time.time() < deadline and proc.poll() is None:  # kill once epoch 2 has been logged
        exp = client.get_experiment_by_name("eulernet")
        runs = client.search_runs([exp.experiment_id]) if exp else []
        if runs and len(client.get_metric_history(runs[0].info.run_id, "train_loss")) >= 2:
            run = runs[0]
            break
        time.sleep(0.25)  # epochs of the tiny model take seconds: poll often enough to catch epoch 2 in flight
    if run is None or proc.poll() is not None:  # say what the process printed: a crash and a fast finish differ
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        printed = proc.communicate(timeout=60)[0] or ""
        raise AssertionError(f"the run finished or never started before the kill (exit {proc.returncode}):\n"
                             f"{printed[-3000:]}")
    os.killpg(proc.pid, signal.SIGKILL)
    out, _ = proc.communicate(timeout=60)
    from tests.harness.faults import kill_ray_session

    kill_ray_session(out)
    assert not (tmp_path / "artifacts/model/train_metrics.json").exists()

    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=900)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-3000:]
    summary = json.loads((tmp_path / "artifacts/model/train_metrics.json").read_text())
    assert summary["mlflow_run_id"] == run.info.run_id  # the same MLflow run, continued
    # Epoch 2's metrics were logged before the kill; its checkpoint may or may not have been persisted by then,
    # so the run continues from epoch 1 or 2, never from scratch.
    assert summary["resumed_from"] and summary["resumed_from"][0] >= 1
    hist = pd.read_csv(tmp_path / "artifacts/model/history.csv")
    assert hist["epoch"].tolist() == [1, 2, 3, 4]
    assert client.get_run(run.info.run_id).info.status == "FINISHED"
    # Re-running a FINISHED stage trains anew (a new run), it does not reopen the finished one.
    from components.training.config import TrainConfig
    from components.training.driver import resumable_run_name

    cfg = TrainConfig(**{**TINY, "epochs": 4})
    storage = str(tmp_path / "artifacts" / "ray_runs")
    assert resumable_run_name(cfg, shards, storage, uri).endswith("-2")
