"""The real pipeline, end to end: `dvc repro` over ingest -> validate -> label -> train -> evaluate -> register.

Runs in a throwaway copy of the project on a tiny generated dataset and a tiny params profile, with real
DVC, Great Expectations, Ray (a local cluster per stage, as a user gets), MLflow on a SQLite file and its registry.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent

# Small enough for ~3-4 minutes on 2 cores, large enough that every gate and split is exercised.
TINY = {
    # One scene only: its share is 100%, so the scene-share bound is opened for this profile.
    "validate": {"devices": ["android_midrange", "iphone_12"], "scenes": ["indoor"], "scene_share": [0.0, 1.0],
                 "min_per_cell": 3},
    "label": {"crop_size": 64, "clips_per_video": 1, "concurrency": 2},
    "train": {"width": 0.125, "epochs": 2, "batch_size": 4, "num_workers": 2},
}


def _run(cmd: list[str], cwd: Path, env: dict) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}"
    return proc


def copy_project(dest: Path) -> Path:
    """The repository's code, dvc.yaml and ignore files in ``dest``, with params.yaml shrunk to the TINY profile."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("components", "flows"):
        shutil.copytree(REPO / name, dest / name, ignore=ignore)
    for name in ("dvc.yaml", ".dvcignore", ".gitignore"):
        shutil.copy(REPO / name, dest / name)
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    for section, values in TINY.items():
        params[section].update(values)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return dest


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    proj = copy_project(tmp_path_factory.mktemp("proj"))

    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "RAY_USAGE_STATS_ENABLED": "0",
           "MLFLOW_DISABLE_TELEMETRY": "true", "MLFLOW_TRACKING_URI": f"sqlite:///{proj}/mlflow.db"}
    env.pop("RAY_ADDRESS", None)
    _run(["git", "init", "-q"], proj, env)
    _run(["dvc", "init", "-q"], proj, env)
    _run(["eulernet", "generate", "--out", "data/sample", "--subjects", "5", "--seed", "3", "--frames", "16",
          "--devices", "android_midrange", "iphone_12", "--scenes", "indoor", "--attacks", "print", "replay",
          "--no-progress"], proj, env)
    _run(["dvc", "add", "-q", "data"], proj, env)  # as data.dvc: a queued experiment's workspace checks it out
    repro = _run(["dvc", "repro"], proj, env)
    return proj, env, repro


@pytest.mark.slow
def test_repro_writes_every_stage_output(project):
    proj, env, _ = project
    manifest = pd.read_csv(proj / "artifacts/manifest.csv")
    assert len(manifest) == 20 and set(manifest["split"]) == {"train", "dev", "test"}
    assert json.loads((proj / "artifacts/quality/summary.json").read_text())["success"] is True

    report = pd.read_csv(proj / "artifacts/shards/report.csv")
    assert len(report) == 20 and (report["status"] == "ok").sum() >= 18
    assert list((proj / "artifacts/shards").rglob("*.parquet")), "label wrote no Parquet shards"

    assert (proj / "artifacts/model/checkpoint.pt").stat().st_size > 0
    history = pd.read_csv(proj / "artifacts/model/history.csv")
    assert len(history) == 2 and history["train_loss"].notna().all()

    metrics = json.loads((proj / "artifacts/eval/metrics.json").read_text())
    test = metrics  # top level: test split, threshold chosen on dev
    assert metrics["threshold_source"] == "dev"
    import torch  # the threshold is chosen once, by training on dev: evaluate applies the checkpoint's own

    ckpt = torch.load(proj / "artifacts/model/checkpoint.pt", map_location="cpu", weights_only=True)
    assert metrics["threshold"] == pytest.approx(ckpt["threshold"]) and metrics["threshold_rule"] == "eer"
    assert 0.0 <= test["acer"] <= 1.0 and 0.0 <= test["apcer"] <= 1.0 and 0.0 <= test["bpcer"] <= 1.0
    assert test["acer"] == pytest.approx((test["apcer"] + test["bpcer"]) / 2)


@pytest.mark.slow
def test_repro_registers_a_champion_and_is_then_up_to_date(project):
    proj, env, _ = project
    registered = json.loads((proj / "artifacts/register/registered.json").read_text())
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    champion = client.get_model_version_by_alias(registered["name"], "champion")
    candidate = client.get_model_version_by_alias(registered["name"], "candidate")
    assert str(champion.version) == str(candidate.version) == str(registered["version"])

    status = _run(["dvc", "status"], proj, env)
    assert "up to date" in status.stdout, status.stdout


@pytest.mark.slow
def test_monitor_passes_held_out_videos_of_the_sample_and_flags_other_uploads(project):
    """`eulernet monitor` (the console script) on request records of the sample's dev and test videos: like its
    training videos (exit 0); the same records claiming 1080p uploads are drift (exit 1)."""
    from components.data.requests import RequestLog, video_record
    from components.face.landmarks import make_backend

    proj, env, _ = project
    manifest = pd.read_csv(proj / "artifacts/manifest.csv")
    held_out = manifest[manifest["split"] != "train"]
    backend = make_backend("dlib")

    def box(frame):
        faces = backend.detect(frame)
        return faces[0].box if faces else None

    records = []
    for i, path in enumerate(held_out["path"]):
        rec = video_record(proj / path, 480, box)
        records.append({"time": pd.Timestamp.now(tz="UTC").isoformat(), "request_id": f"q{i}", **rec,
                        "score": 0.5, "decision": "live", "model": "eulernet", "version": "1"})
    params = yaml.safe_load((proj / "params.yaml").read_text())
    params["monitor"] = {"since": "1h", "min_requests": len(records)}
    (proj / "monitor.yaml").write_text(yaml.safe_dump(params))
    for name, override in (("like", {}), ("hd", {"source_width": 1920, "source_height": 1080})):
        log = RequestLog(proj / "logs" / name, "r0")
        for rec in records:
            log.write({**rec, **override})
        log.close()
    ok = subprocess.run(["eulernet", "monitor", "--params", "monitor.yaml", "--log", "logs/like", "--out", "mon"],
                        cwd=proj, env=env, capture_output=True, text=True)
    assert ok.returncode == 0 and "LIKE TRAINING" in ok.stdout, ok.stdout + ok.stderr
    drift = subprocess.run(["eulernet", "monitor", "--params", "monitor.yaml", "--log", "logs/hd", "--out", "mon2"],
                           cwd=proj, env=env, capture_output=True, text=True)
    assert drift.returncode == 1 and "source_height" in drift.stderr, drift.stdout + drift.stderr


def test_bare_dvc_pull_on_a_fresh_clone_succeeds(tmp_path):
    """What a DVC user types first: `dvc pull` with no target fetches the data and fails on nothing (stage
    outputs are regenerable and not cached, so there is nothing missing from the remote to fail on)."""
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}"}
    clone = tmp_path / "clone"
    _run(["git", "clone", "-q", str(REPO), str(clone)], tmp_path, env)
    shutil.copy(REPO / "dvc.yaml", clone / "dvc.yaml")  # this working tree's pipeline, not only the last commit's
    proc = subprocess.run(["dvc", "pull"], cwd=clone, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "ERROR" not in proc.stdout + proc.stderr
    assert (clone / "data/sample/manifest.csv").is_file()


def test_plots_are_declared_once():
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())
    top = [next(iter(p)) if isinstance(p, dict) else p for p in spec.get("plots", [])]
    staged = [next(iter(p)) if isinstance(p, dict) else p for s in spec["stages"].values() for p in s.get("plots", [])]
    names = top + staged
    assert len(names) == len(set(names)), f"plots declared twice: {sorted(n for n in names if names.count(n) > 1)}"


def _exp_rows(node, out=None) -> list[dict]:
    """Every revision record in `dvc exp show --json` output (the layout nests experiments under their base)."""
    out = [] if out is None else out
    if isinstance(node, dict):
        if "rev" in node and isinstance(node.get("data"), dict):
            out.append(node)
        for v in node.values():
            _exp_rows(v, out)
    elif isinstance(node, list):
        for v in node:
            _exp_rows(v, out)
    return out


def _start_queue_and_wait(proj: Path, env: dict, n: int, timeout_s: float = 1200) -> None:
    """`dvc queue start`, then poll `dvc queue status` until ``n`` tasks ended, then stop the worker.

    The worker is a detached celery process that inherits the caller's pipes, so waiting on `dvc queue start`'s
    output means waiting for the worker to exit. It exits on its own only while its monitor thread lives, and
    that thread dies on a race in celery's file broker (a half-written control message, JSONDecodeError) that
    load makes likely: the experiments then succeed and the worker idles for ever. Polling the queue's state and
    stopping the worker ourselves tests what users do and leaves no process behind."""
    def start():
        subprocess.run(["dvc", "queue", "start", "-j", "1"], cwd=proj, env=env, stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120, check=True)

    start()
    deadline = time.monotonic() + timeout_s
    status, restarts, idle_polls = "", 0, 0
    while time.monotonic() < deadline:
        status = _run(["dvc", "queue", "status"], proj, env).stdout
        if sum(status.count(word) for word in ("Success", "Failed")) >= n:
            break
        # The same race can also end the worker between two tasks, leaving the rest queued with no worker: a
        # user starts it again, and so does this (after three polls without one, so a worker still coming up is
        # not doubled; three times at most, so a worker that cannot run still fails the test).
        idle_polls = idle_polls + 1 if "Queued" in status and "0 active, 0 idle" in status else 0
        if idle_polls >= 3 and restarts < 3:
            restarts, idle_polls = restarts + 1, 0
            start()
        time.sleep(5)
    else:
        raise AssertionError(f"the queued experiments did not end in {timeout_s:.0f} s:\n{status}")
    subprocess.run(["dvc", "queue", "stop"], cwd=proj, env=env, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    pids = []
    for pidfile in (proj / ".dvc/tmp/exps/celery").glob("*.pid"):
        try:
            pids.append(int(pidfile.read_text().strip()))
        except ValueError:
            pass
    stop_by = time.monotonic() + 15
    while pids and time.monotonic() < stop_by:  # a healthy worker exits on `stop`
        pids = [pid for pid in pids if Path(f"/proc/{pid}").exists()]
        time.sleep(0.5)
    for pid in pids:  # one whose monitor thread died does not
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


@pytest.mark.slow
def test_experiments_compare_through_dvc(project):
    """The DVC loop: commit, queue `dvc exp run -S train.variant=... -S train.lr=...` twice, `dvc queue start`, then
    `dvc exp show --json` / `dvc metrics diff` read real numbers back (headline metrics are small git-tracked files,
    not ignored artifacts) and `eulernet ablation --from-dvc-exps` prints Table I from that same output.
    Each queued experiment runs in a temporary copy of the project: its label stage must find every clip in the
    project's labeling cache (no relabeling), and its MLflow runs must land in the project's store."""
    proj, env, _ = project
    env = {**env, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.com", "GIT_COMMITTER_NAME": "t",
           "GIT_COMMITTER_EMAIL": "t@example.com"}
    headline = json.loads((proj / "metrics/eval.json").read_text())
    assert {"test_acer", "test_apcer", "test_bpcer", "test_auc", "dev_acer", "threshold"} <= set(headline)
    assert all(v is None or isinstance(v, (int, float)) for v in headline.values())  # numbers only
    _run(["git", "add", "-A"], proj, env)
    _run(["git", "commit", "-qm", "baseline"], proj, env)
    runs = {"lr-a": ("c3", "0.01"), "lr-b": ("baseline", "0.0005")}
    for name, (variant, lr) in runs.items():
        _run(["dvc", "exp", "run", "--queue", "-n", name, "-S", f"train.variant={variant}", "-S", f"train.lr={lr}",
              "evaluate"], proj, env)
    _start_queue_and_wait(proj, env, len(runs))
    for name in runs:
        log = _run(["dvc", "queue", "logs", name], proj, env).stdout
        assert "Running stage 'evaluate'" in log and "ERROR" not in log, log[-3000:]
        assert re.search(r"\(0 labeled now, \d+ from cache\)", log), log[-3000:]  # the project's labeling cache
    status = _run(["dvc", "queue", "status"], proj, env).stdout
    assert status.count("Success") == 2, status
    assert _run(["git", "status", "--porcelain"], proj, env).stdout.strip() == ""  # the workspace is untouched

    shown_text = _run(["dvc", "exp", "show", "--json"], proj, env).stdout
    shown = json.loads(shown_text)
    rows = {r.get("name") or r["rev"]: r["data"] for r in _exp_rows(shown)}
    assert set(runs) <= set(rows), sorted(rows)
    for name, (variant, lr) in runs.items():
        data = rows[name]
        assert data["params"]["params.yaml"]["data"]["train"]["lr"] == float(lr)
        assert data["params"]["params.yaml"]["data"]["train"]["variant"] == variant
        acer = data["metrics"]["metrics/eval.json"]["data"]["test_acer"]
        assert isinstance(acer, (int, float)) and 0.0 <= acer <= 1.0
    diff = _run(["dvc", "metrics", "diff", "HEAD", "--json"], proj, env)
    assert "failed to load" not in diff.stdout + diff.stderr
    assert "metrics/eval.json" in json.loads(diff.stdout or "{}") or diff.stdout.strip() == "{}"

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=env["MLFLOW_TRACKING_URI"])
    trained = {r.data.params.get("train.variant") for r in client.search_runs(
        [client.get_experiment_by_name("eulernet").experiment_id])}
    assert {"c3", "baseline"} <= trained, trained

    # Table I from the same `dvc exp show --json` output (a saved copy, then dvc itself).
    (proj / "exps.json").write_text(shown_text)
    table = _run(["eulernet", "ablation", "--from-dvc-exps", "exps.json", "--exps", "lr-*"], proj, env).stdout
    assert table == _run(["eulernet", "ablation", "--from-dvc-exps", "--exps", "lr-*"], proj, env).stdout
    lines = {line.split("|")[1].strip(): line for line in table.splitlines() if line.startswith("| ")}
    assert {"Compare 3", "Baseline", "lr-a", "lr-b"} <= set(lines), table
    for name, tag in (("lr-a", "Compare 3"), ("lr-b", "Baseline")):
        acer = 100 * rows[name]["metrics"]["metrics/eval.json"]["data"]["test_acer"]
        assert f"{acer:.2f} ± 0.00 |" in lines[tag] and f"| {acer:.2f} |" in lines[name], table
